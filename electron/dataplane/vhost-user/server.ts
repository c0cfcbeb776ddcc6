// The vhost-user backend for one disk: listens on a unix socket (listener.ts), serves one frontend
// (QEMU) at a time (session.ts, one handler per message in handlers.ts), and drives a
// VirtioDevice. Messages are handled strictly in order; some handlers wait for the device
// (GET_VRING_BASE drains a queue). A malformed message closes that connection with a logged
// reason (the frontend may reconnect); a request that is well formed but cannot be honoured (a
// ring address outside guest memory, a config write to a read-only field) is refused and, where
// it concerns a ring, stops that ring. Nothing here throws into the event loop.
import { EventEmitter } from 'node:events';
import type { PeerCredentials } from '../native/posix.js';
import type { VirtioDevice } from '../virtio/types.js';
import { Channel } from './channel.js';
import type { InflightArea } from './inflight.js';
import { Listener, handshakeFailure, listenSocket, HANDSHAKE_DEADLINE_MS } from './listener.js';
import { Session, type SessionHost } from './session.js';

export { HANDSHAKE_DEADLINE_MS } from './listener.js';

export interface VhostUserServerOptions {
  socketPath: string;
  device: VirtioDevice;
  /** Accepts or refuses a connecting frontend by its credentials (only the QEMU this disk belongs to). */
  acceptPeer?: (peer: PeerCredentials) => boolean;
  /**
   * Leave connections waiting in the listen backlog until allowConnections(): used when the
   * expected frontend's pid is not known yet (the disk starts before QEMU is spawned), so no
   * connection is ever served before the peer check can be made.
   */
  holdConnections?: boolean;
}

export interface VhostUserServerEvents {
  log: [line: string];
  connected: [peer: PeerCredentials | null];
  disconnected: [reason: string | null];
  /** A ring stopped because of bad input from the frontend or the guest. */
  broken: [queue: number, reason: string];
  /** Every well-formed request as it is handled (control plane only: for traces and tests). */
  request: [name: string];
}

export class VhostUserServer extends EventEmitter<VhostUserServerEvents> implements SessionHost {
  readonly socketPath: string;
  readonly device: VirtioDevice;
  private readonly listener: Listener;
  private session: Session | null = null;
  /** Set while a finished session is being torn down: no new connection is accepted meanwhile. */
  private teardown: Promise<void> | null = null;
  private closed = false;
  /** While paused, kicks are noted but not passed to the device (pause/drain of the IOThread). */
  private isPaused = false;
  /** While set, nothing is accepted: pending connections wait in the backlog (see holdConnections). */
  private held: boolean;
  /** The QEMU lost-reconnect hint was logged; not again until a frontend owns a session. */
  private silentNoted = false;

  private constructor(opts: VhostUserServerOptions, listenFd: number) {
    super();
    this.socketPath = opts.socketPath;
    this.device = opts.device;
    this.held = opts.holdConnections ?? false;
    this.listener = new Listener(listenFd, {
      ...(opts.acceptPeer ? { acceptPeer: opts.acceptPeer } : {}),
      log: (line) => this.log(line),
      // A connection that has not sent SET_OWNER yet does not own the disk: whoever comes next
      // waits in the backlog until it does (then is refused) or is closed (then is served).
      mayAccept: () => !this.closed && !this.held && !this.teardown && !(this.session && !this.session.owned),
      serving: () => this.session !== null,
      connection: (fd, peer) => this.startSession(fd, peer),
    });
    this.device.onBroken = (queue, reason) => this.session?.deviceBroke(queue, reason);
    this.listener.watchAccept();
  }

  /** Listens on `opts.socketPath` (see listenSocket for the socket's modes and a stale one). */
  static listen(opts: VhostUserServerOptions): VhostUserServer {
    return new VhostUserServer(opts, listenSocket(opts.socketPath));
  }

  get connected(): boolean {
    return this.session !== null;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  /** The inflight area the current frontend shared, if any (requests are resubmitted from it). */
  get inflight(): InflightArea | null {
    return this.session?.inflight ?? null;
  }

  log(line: string): void {
    this.emit('log', `vhost-user ${this.socketPath}: ${line}`);
  }

  requested(name: string): void {
    this.emit('request', name);
  }

  ringBroken(queue: number, reason: string): void {
    this.emit('broken', queue, reason);
  }

  /** Ends holdConnections: connections waiting in the backlog are accepted (and peer-checked) now. */
  allowConnections(): void {
    if (!this.held) return;
    this.held = false;
    this.listener.watchAccept();
    this.listener.acceptPending();
  }

  private startSession(fd: number, peer: PeerCredentials | null): void {
    let session!: Session;
    const channel = new Channel(fd, {
      onMessage: (msg) => session.receive(msg),
      onClose: (reason) => this.endSession(session, reason),
    });
    session = new Session(this, channel, peer);
    this.session = session;
    // Not watched again until the session owns the disk (newcomers wait in the backlog).
    this.listener.unwatch();
    session.handshakeTimer = setTimeout(() => this.handshakeExpired(session), HANDSHAKE_DEADLINE_MS).unref();
    this.emit('connected', peer);
  }

  private handshakeExpired(s: Session): void {
    if (this.session !== s || s.owned) return;
    const reason = handshakeFailure(s.received, !this.silentNoted);
    if (s.received === 0) this.silentNoted = true;
    s.fail(reason);
  }

  /** SET_OWNER: this connection is the disk's frontend; later ones are refused from now on. */
  own(s: Session): void {
    if (s.owned) return;
    s.owned = true;
    this.silentNoted = false;
    if (s.handshakeTimer) clearTimeout(s.handshakeTimer);
    s.handshakeTimer = null;
    this.listener.watchAccept();
    this.listener.acceptPending();
  }

  /** The device's configuration space changed: tells the connected frontend, if any. Returns why
   *  it could not be told (a sentence), or null (told, or nobody connected: a frontend reads the
   *  configuration when it connects). */
  configChanged(): string | null {
    const s = this.session;
    return s?.owned ? s.notifyConfigChange() : null;
  }

  /** Stops passing kicks to the device: no new requests are taken (in-flight ones go on). */
  pause(): void {
    this.isPaused = true;
  }

  /** Passes kicks again, and looks at every running ring for what arrived meanwhile. */
  resume(): void {
    if (!this.isPaused) return;
    this.isPaused = false;
    const s = this.session;
    if (s) s.rings.forEach((r, i) => r.running && s.kickDevice(i));
  }

  private endSession(s: Session, reason: string | null): void {
    if (this.session !== s) return;
    // A reason means this side ended it (bad input, shutdown); null means the frontend hung up.
    this.log(reason ? `closing the connection: ${reason}` : 'frontend disconnected');
    if (s.handshakeTimer) clearTimeout(s.handshakeTimer);
    s.handshakeTimer = null;
    this.listener.unwatch();
    this.teardown = (async () => {
      await s.tearDown();
      this.session = null;
      this.teardown = null;
      this.emit('disconnected', reason);
      if (!this.closed) {
        this.listener.watchAccept();
        this.listener.acceptPending();
      }
    })();
  }

  /** Stops listening, ends the current connection (the device is reset, memory unmapped). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listener.close(this.socketPath);
    this.session?.channel.close('the server is shutting down');
    await this.teardown;
  }
}
