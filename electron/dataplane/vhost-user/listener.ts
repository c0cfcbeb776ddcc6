// The disk's listening socket: created with the right modes, connections accepted only when one
// may be served, each checked against the peer policy (SO_PEERCRED), and the deadline a new
// connection has to claim the disk with SET_OWNER.
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { posix, POLL_READABLE, closeQuietly, type FdWatch, type PeerCredentials } from '../native/posix.js';
import { SpindleError, errnoOf } from '../../shared/errors.js';

/**
 * How long a new connection has to send SET_OWNER, which every frontend sends within its first
 * few messages (vhost-user.rst: "issued when a new connection is established"). Until then the
 * connection does not own the disk: later connections wait in the listen backlog instead of being
 * refused, and one that idles past this deadline is closed, so an idle client cannot keep the
 * real frontend out.
 */
export const HANDSHAKE_DEADLINE_MS = 5_000;

/** Why a connection that did not send SET_OWNER in time is closed. `firstSilence`: the QEMU hint
 *  was not given since a frontend last owned the disk. */
export function handshakeFailure(received: number, firstSilence: boolean): string {
  const secs = HANDSHAKE_DEADLINE_MS / 1000;
  if (received > 0) {
    return `it sent no SET_OWNER within ${secs} s (a frontend opens every session with it), so it does not keep the disk from the next frontend`;
  }
  // QEMU before 9.1 goes silent like this for good when its backend dies during the first
  // messages of a reconnect (vhost_dev_init fails, and the chardev handler that would run the
  // next handshake is never reinstated: fixed upstream by "vhost-user: fix lost reconnect").
  const hint = firstSilence
    ? ". If it is QEMU older than 9.1, it has stopped talking to this disk after an earlier backend died in the middle of its reconnect (a QEMU bug): the guest's I/O on this disk stays stuck until the VM is restarted"
    : '';
  return `the frontend connected and sent nothing for ${secs} s${hint}`;
}

/**
 * Listens on `path`. A missing parent directory is created 0700; the socket itself is 0600 so
 * only this user can connect even in a shared directory. A stale socket (nobody listening) is
 * replaced; a live one is refused. Returns the listening fd.
 */
export function listenSocket(path: string): number {
  const dir = dirname(path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (existsSync(path)) {
    if (!lstatSync(path).isSocket()) throw new SpindleError('CONFLICT', `${path} exists and is not a socket; refusing to replace it.`);
    let live = false;
    try {
      posix.closeFd(posix.connectUnix(path));
      live = true;
    } catch {
      /* ECONNREFUSED: stale */
    }
    if (live) throw new SpindleError('CONFLICT', `Another program is already serving ${path}.`);
    unlinkSync(path);
  }
  let fd: number;
  try {
    fd = posix.listenUnix(path);
  } catch (err) {
    const errno = errnoOf(err);
    if (errno === 'ENAMETOOLONG')
      throw new SpindleError('INVALID_ARGUMENT', `The socket path ${path} is too long for a unix socket (at most 107 bytes).`, errno);
    if (errno === 'EACCES') throw new SpindleError('PERMISSION_DENIED', `Cannot create a socket in ${dir}: permission denied.`, errno);
    throw new SpindleError('IO_ERROR', `Cannot listen on ${path}: ${(err as Error).message}`, errno);
  }
  chmodSync(path, 0o600);
  return fd;
}

export interface ListenerOptions {
  /** Accepts or refuses a connecting frontend by its credentials. */
  acceptPeer?: (peer: PeerCredentials) => boolean;
  log(line: string): void;
  /** Whether a connection may be taken from the backlog now (else it waits there). */
  mayAccept(): boolean;
  /** Whether a frontend is being served (a newcomer that passes the peer check is then refused). */
  serving(): boolean;
  /** A connection was accepted; it is served from now on. */
  connection(fd: number, peer: PeerCredentials | null): void;
}

export class Listener {
  private watch: FdWatch | null = null;
  private closed = false;

  constructor(
    private fd: number,
    private readonly opts: ListenerOptions,
  ) {}

  /** Watches for connections only when one could be accepted now: the watch is level-triggered,
   *  and a connection left waiting in the backlog would wake it in a loop. */
  watchAccept(): void {
    if (this.closed || this.watch || !this.opts.mayAccept()) return;
    this.watch = posix.watchFd(this.fd, POLL_READABLE, () => this.acceptPending());
  }

  unwatch(): void {
    this.watch?.stop();
    this.watch = null;
  }

  acceptPending(): void {
    const o = this.opts;
    for (;;) {
      if (this.closed || !o.mayAccept()) return;
      let fd: number;
      try {
        fd = posix.acceptUnix(this.fd);
      } catch (err) {
        o.log(`accept failed: ${(err as Error).message}`);
        return;
      }
      if (fd < 0) return;
      let peer: PeerCredentials | null = null;
      try {
        peer = posix.peerCred(fd);
      } catch {
        /* not fatal: only used for logs and the optional peer check */
      }
      const who = peer ? `pid ${peer.pid}` : 'unknown peer';
      // The peer check comes first, so a stranger is named as one even while QEMU is connected;
      // credentials that cannot be read are no pass either.
      if (o.acceptPeer && (!peer || !o.acceptPeer(peer))) {
        o.log(`refused a frontend connection from ${who}${peer ? ` (uid ${peer.uid})` : ''}: not the process this disk belongs to`);
        closeQuietly(fd);
        continue;
      }
      if (o.serving()) {
        o.log(`refused a second frontend connection from ${who}: this disk is already being served to a frontend`);
        closeQuietly(fd);
        continue;
      }
      o.connection(fd, peer);
      o.log(`frontend connected (${who})`);
    }
  }

  /** Stops listening and removes the socket file. */
  close(path: string): void {
    if (this.closed) return;
    this.closed = true;
    this.unwatch();
    closeQuietly(this.fd);
    this.fd = -1;
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  }
}
