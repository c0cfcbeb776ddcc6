// The vhost-user backend for one disk: listens on a unix socket, serves one frontend (QEMU) at a
// time, and drives a VirtioDevice. Messages are handled strictly in order; some handlers wait
// for the device (GET_VRING_BASE drains a queue). A malformed message closes that connection with
// a logged reason (the frontend may reconnect); a request that is well formed but cannot be
// honoured (a ring address outside guest memory, a config write to a read-only field) is refused
// and, where it concerns a ring, stops that ring. Nothing here throws into the event loop.
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { posix, POLL_READABLE, closeQuietly, type FdWatch, type PeerCredentials } from '../native/posix.js';
import type { VirtioDevice } from '../virtio/types.js';
import type { TrackedVringSetup } from '../virtio/inflight-log.js';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { Channel } from './channel.js';
import {
  ProtocolError, checkBackendMessage, decodeConfig, decodeInflight, decodeMemTable, decodeState, decodeU64,
  decodeVringAddr, encodeConfig, encodeInflight, encodeState, encodeU64, needsReply,
} from './codec.js';
import { MemoryTable } from './memory-table.js';
import { InflightArea, inflightShapeProblem } from './inflight.js';
import {
  BACKEND_PROTOCOL_FEATURES, F_PROTOCOL_FEATURES, FLAG_REPLY, MAX_RING_SIZE, ProtocolFeature, Request,
  VRING_INDEX_MASK, VRING_NOFD_FLAG, protocolBit, requestName, type Message, type VringAddrDesc,
} from './protocol.js';

/** A well-formed request that cannot be honoured: refused (REPLY_ACK failure), the connection goes on. */
class RequestRefused extends Error {}
/** As RequestRefused, and the ring it concerns stops until the frontend sets it up again. */
class RingError extends RequestRefused {
  constructor(readonly ring: number, message: string) {
    super(message);
  }
}

interface RingState {
  num: number;
  addr: VringAddrDesc | null;
  base: number;
  kickFd: number;
  callFd: number;
  errFd: number;
  kickWatch: FdWatch | null;
  enabled: boolean;
  running: boolean;
  broken: string | null;
  notify: () => void;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * How long a new connection has to send SET_OWNER, which every frontend sends within its first
 * few messages (vhost-user.rst: "issued when a new connection is established"). Until then the
 * connection does not own the disk: later connections wait in the listen backlog instead of being
 * refused, and one that idles past this deadline is closed, so an idle client cannot keep the
 * real frontend out.
 */
export const HANDSHAKE_DEADLINE_MS = 5_000;

/** One frontend connection's state; dropped whole on disconnect. */
class Session {
  /** SET_OWNER received: this connection is the disk's frontend until it goes. */
  owned = false;
  /** Messages received (a connection that sent none is told apart in the log). */
  received = 0;
  handshakeTimer: NodeJS.Timeout | null = null;
  features = 0n;
  protocolFeatures = 0n;
  memory = MemoryTable.empty();
  inflight: InflightArea | null = null;
  readonly rings: RingState[];
  readonly queue: Message[] = [];
  /** Resolves when the message being handled (if any) is done. */
  working: Promise<void> = Promise.resolve();
  draining = false;

  constructor(readonly channel: Channel, readonly peer: PeerCredentials | null, numQueues: number) {
    this.rings = Array.from({ length: numQueues }, () => {
      const ring: RingState = {
        num: 0, addr: null, base: 0, kickFd: -1, callFd: -1, errFd: -1, kickWatch: null,
        enabled: false, running: false, broken: null,
        // One eventfd write per completed batch: the device calls this, never per request.
        notify: () => {
          if (ring.callFd >= 0) posix.eventfdWrite(ring.callFd);
        },
      };
      return ring;
    });
  }

  get replyAck(): boolean {
    return (this.protocolFeatures & protocolBit(ProtocolFeature.REPLY_ACK)) !== 0n;
  }
}

export interface VhostUserServerOptions {
  socketPath: string;
  device: VirtioDevice;
  /** Accepts or refuses a connecting frontend by its credentials (only the QEMU we started). */
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

export class VhostUserServer extends EventEmitter<VhostUserServerEvents> {
  readonly socketPath: string;
  private readonly device: VirtioDevice;
  private readonly acceptPeer: ((peer: PeerCredentials) => boolean) | undefined;
  private listenFd: number;
  private acceptWatch: FdWatch | null = null;
  private session: Session | null = null;
  /** Set while a finished session is being torn down: no new connection is accepted meanwhile. */
  private teardown: Promise<void> | null = null;
  private closed = false;
  /** While paused, kicks are noted but not passed to the device (pause/drain of the IOThread). */
  private paused = false;
  /** While set, nothing is accepted: pending connections wait in the backlog (see holdConnections). */
  private held: boolean;
  /** The QEMU lost-reconnect hint was logged; not again until a frontend owns a session. */
  private silentNoted = false;

  private constructor(opts: VhostUserServerOptions, listenFd: number) {
    super();
    this.socketPath = opts.socketPath;
    this.device = opts.device;
    this.acceptPeer = opts.acceptPeer;
    this.held = opts.holdConnections ?? false;
    this.listenFd = listenFd;
    this.device.onBroken = (queue, reason) => this.onDeviceBroken(queue, reason);
    this.watchAccept();
  }

  /**
   * Listens on `socketPath`. A missing parent directory is created 0700; the socket itself is
   * 0600 so only this user can connect even in a shared directory. A stale socket (nobody
   * listening) is replaced; a live one is refused.
   */
  static listen(opts: VhostUserServerOptions): VhostUserServer {
    const path = opts.socketPath;
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
      if (errno === 'ENAMETOOLONG') throw new SpindleError('INVALID_ARGUMENT', `The socket path ${path} is too long for a unix socket (at most 107 bytes).`, errno);
      if (errno === 'EACCES') throw new SpindleError('PERMISSION_DENIED', `Cannot create a socket in ${dir}: permission denied.`, errno);
      throw new SpindleError('IO_ERROR', `Cannot listen on ${path}: ${(err as Error).message}`, errno);
    }
    chmodSync(path, 0o600);
    return new VhostUserServer(opts, fd);
  }

  get connected(): boolean {
    return this.session !== null;
  }

  /** The inflight area the current frontend shared, if any (the device resubmits from it). */
  get inflight(): InflightArea | null {
    return this.session?.inflight ?? null;
  }

  private log(line: string): void {
    this.emit('log', `vhost-user ${this.socketPath}: ${line}`);
  }

  /** Ends holdConnections: connections waiting in the backlog are accepted (and peer-checked) now. */
  allowConnections(): void {
    if (!this.held) return;
    this.held = false;
    this.watchAccept();
    this.acceptPending();
  }

  /** Watches for connections only when one could be accepted now: the watch is level-triggered,
   *  and a connection left waiting in the backlog would wake it in a loop. */
  private watchAccept(): void {
    if (this.closed || this.acceptWatch || this.held || this.teardown || (this.session && !this.session.owned)) return;
    this.acceptWatch = posix.watchFd(this.listenFd, POLL_READABLE, () => this.acceptPending());
  }

  private acceptPending(): void {
    for (;;) {
      // A connection that has not sent SET_OWNER yet does not own the disk: whoever comes next
      // waits in the backlog until it does (then is refused) or is closed (then is served).
      if (this.closed || this.teardown || this.held || (this.session && !this.session.owned)) return;
      let fd: number;
      try {
        fd = posix.acceptUnix(this.listenFd);
      } catch (err) {
        this.log(`accept failed: ${(err as Error).message}`);
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
      if (this.acceptPeer && (!peer || !this.acceptPeer(peer))) {
        this.log(`refused a frontend connection from ${who}${peer ? ` (uid ${peer.uid})` : ''}: not the process this disk belongs to`);
        closeQuietly(fd);
        continue;
      }
      if (this.session) {
        this.log(`refused a second frontend connection from ${who}: this disk is already being served to a frontend`);
        closeQuietly(fd);
        continue;
      }
      this.startSession(fd, peer);
      this.log(`frontend connected (${who})`);
    }
  }

  private startSession(fd: number, peer: PeerCredentials | null): void {
    let session!: Session;
    const channel = new Channel(fd, {
      onMessage: (msg) => {
        session.received++;
        session.queue.push(msg);
        if (!session.draining) void this.drain(session);
      },
      onClose: (reason) => this.endSession(session, reason),
    });
    session = new Session(channel, peer, this.device.numQueues);
    this.session = session;
    // Not watched again until the session owns the disk (acceptPending leaves newcomers waiting).
    this.acceptWatch?.stop();
    this.acceptWatch = null;
    session.handshakeTimer = setTimeout(() => this.handshakeExpired(session), HANDSHAKE_DEADLINE_MS).unref();
    this.emit('connected', peer);
  }

  private handshakeExpired(s: Session): void {
    if (this.session !== s || s.owned) return;
    const secs = HANDSHAKE_DEADLINE_MS / 1000;
    if (s.received > 0) {
      this.failConnection(s, `it sent no SET_OWNER within ${secs} s (a frontend opens every session with it), so it does not keep the disk from the next frontend`);
      return;
    }
    // QEMU before 9.1 goes silent like this for good when its backend dies during the first
    // messages of a reconnect (vhost_dev_init fails, and the chardev handler that would run the
    // next handshake is never reinstated: fixed upstream by "vhost-user: fix lost reconnect").
    const hint = this.silentNoted ? '' : '. If it is QEMU older than 9.1, it has stopped talking to this disk after an earlier backend died in the middle of its reconnect (a QEMU bug): the guest\'s I/O on this disk stays stuck until the VM is restarted';
    this.silentNoted = true;
    this.failConnection(s, `the frontend connected and sent nothing for ${secs} s${hint}`);
  }

  /** SET_OWNER: this connection is the disk's frontend; later ones are refused from now on. */
  private own(s: Session): void {
    if (s.owned) return;
    s.owned = true;
    this.silentNoted = false;
    if (s.handshakeTimer) clearTimeout(s.handshakeTimer);
    s.handshakeTimer = null;
    this.watchAccept();
    this.acceptPending();
  }

  private async drain(s: Session): Promise<void> {
    s.draining = true;
    let done!: () => void;
    try {
      while (s.queue.length && !s.channel.isClosed) {
        const msg = s.queue.shift()!;
        s.working = new Promise<void>((r) => (done = r));
        try {
          await this.handle(s, msg);
        } finally {
          done();
        }
      }
    } finally {
      s.draining = false;
      // A closed channel leaves unhandled messages: their fds are ours to close.
      if (s.channel.isClosed) for (const m of s.queue.splice(0)) m.fds.forEach(closeQuietly);
    }
  }

  private async handle(s: Session, msg: Message): Promise<void> {
    const name = requestName(msg.request);
    const shape = checkBackendMessage(msg);
    if (shape) {
      msg.fds.forEach(closeQuietly);
      this.failConnection(s, shape);
      return;
    }
    this.emit('request', name);
    try {
      const reply = await this.dispatch(s, msg);
      if (s.channel.isClosed) return;
      if (reply) s.channel.send(msg.request, FLAG_REPLY, reply.payload, reply.fds);
      else if (s.replyAck && needsReply(msg)) s.channel.send(msg.request, FLAG_REPLY, encodeU64(0));
    } catch (err) {
      msg.fds.forEach(closeQuietly);
      if (err instanceof RequestRefused) {
        this.log(`${name} refused: ${err.message}`);
        if (err instanceof RingError) this.breakRing(s, err.ring, err.message);
        if (s.replyAck && needsReply(msg)) s.channel.send(msg.request, FLAG_REPLY, encodeU64(1));
      } else if (err instanceof ProtocolError) {
        this.failConnection(s, `${name}: ${err.message}`);
      } else {
        // A bug or an unexpected OS error: this connection cannot be trusted to go on.
        this.failConnection(s, `${name} failed: ${(err as Error).stack ?? err}`);
      }
    }
  }

  private failConnection(s: Session, reason: string): void {
    s.channel.close(reason);
  }

  /** Takes the message's fds: from here on the handler owns them. */
  private static takeFds(msg: Message): number[] {
    return msg.fds.splice(0);
  }

  private ringIndex(index: number): number {
    if (index >= this.device.numQueues) {
      throw new ProtocolError(`vring index ${index} is out of range (the device has ${this.device.numQueues} queues)`);
    }
    return index;
  }

  private async dispatch(s: Session, msg: Message): Promise<{ payload: Uint8Array; fds?: number[] } | void> {
    const p = msg.payload;
    switch (msg.request) {
      case Request.GET_FEATURES:
        return { payload: encodeU64(this.device.deviceFeatures | F_PROTOCOL_FEATURES) };
      case Request.SET_FEATURES: {
        const f = decodeU64(p);
        const offered = this.device.deviceFeatures | F_PROTOCOL_FEATURES;
        if (f & ~offered) throw new ProtocolError(`acknowledges features that were not offered (${hex(Number(f & ~offered))})`);
        s.features = f;
        this.device.setFeatures(f & ~F_PROTOCOL_FEATURES);
        // Without protocol features there is no SET_VRING_ENABLE: rings are enabled from the start.
        if (!(f & F_PROTOCOL_FEATURES)) s.rings.forEach((r, i) => { r.enabled = true; this.tryStart(s, i); });
        return;
      }
      case Request.GET_PROTOCOL_FEATURES:
        return { payload: encodeU64(BACKEND_PROTOCOL_FEATURES) };
      case Request.SET_PROTOCOL_FEATURES: {
        const f = decodeU64(p);
        if (f & ~BACKEND_PROTOCOL_FEATURES) throw new ProtocolError(`acknowledges protocol features that were not offered (${hex(Number(f & ~BACKEND_PROTOCOL_FEATURES))})`);
        s.protocolFeatures = f;
        return;
      }
      case Request.SET_OWNER:
        this.own(s);
        return;
      case Request.RESET_OWNER:
        // Deprecated; the spec recommends treating it as "disable all rings".
        for (let i = 0; i < s.rings.length; i++) await this.stopRing(s, i);
        return;
      case Request.GET_QUEUE_NUM:
        return { payload: encodeU64(this.device.numQueues) };
      case Request.SET_MEM_TABLE:
        return this.setMemTable(s, msg);
      case Request.SET_VRING_NUM: {
        const { index, num } = decodeState(p);
        const ring = s.rings[this.ringIndex(index)]!;
        if (num < 1 || num > MAX_RING_SIZE || (num & (num - 1)) !== 0) throw new RingError(index, `ring ${index}: size ${num} is not a power of two up to ${MAX_RING_SIZE}`);
        ring.num = num;
        return;
      }
      case Request.SET_VRING_ADDR: {
        const addr = decodeVringAddr(p);
        const ring = s.rings[this.ringIndex(addr.index)]!;
        ring.addr = addr;
        for (const [what, a] of [['descriptor table', addr.descAddr], ['available ring', addr.availAddr], ['used ring', addr.usedAddr]] as const) {
          if (s.memory.frontendToGuest(a, 1) === null) throw new RingError(addr.index, `ring ${addr.index}: the ${what} address ${hex(a)} is not in the guest memory table`);
        }
        // New addresses are a new setup of the ring: an earlier refusal no longer applies.
        if (!ring.running) ring.broken = null;
        return;
      }
      case Request.SET_VRING_BASE: {
        const { index, num } = decodeState(p);
        const ring = s.rings[this.ringIndex(index)]!;
        if (num > 0xffff) throw new RingError(index, `ring ${index}: base ${num} is not a split-ring index (0..65535)`);
        ring.base = num;
        return;
      }
      case Request.GET_VRING_BASE: {
        const { index } = decodeState(p);
        const i = this.ringIndex(index);
        await this.stopRing(s, i);
        const ring = s.rings[i]!;
        // Stopped: the frontend sets kick and call again before restarting it.
        ring.kickWatch?.stop();
        ring.kickWatch = null;
        const kick = ring.kickFd, call = ring.callFd;
        ring.kickFd = -1;
        ring.callFd = -1;
        closeQuietly(kick);
        closeQuietly(call);
        ring.broken = null;
        return { payload: encodeState(i, ring.base) };
      }
      case Request.SET_VRING_KICK: {
        const v = Number(decodeU64(p) & 0xffffn);
        const i = this.ringIndex(v & VRING_INDEX_MASK);
        const ring = s.rings[i]!;
        if (v & VRING_NOFD_FLAG) throw new RingError(i, `ring ${i}: polling without a kick eventfd is not supported`);
        const [fd] = VhostUserServer.takeFds(msg);
        ring.kickWatch?.stop();
        closeQuietly(ring.kickFd);
        ring.kickFd = fd!;
        ring.kickWatch = posix.watchFd(fd!, POLL_READABLE, (_ev, _value, error) => {
          if (error !== undefined) this.breakRing(s, i, `ring ${i}: its kick eventfd failed (errno ${-error})`);
          else if (ring.running) this.kickDevice(s, i);
        }, true);
        this.tryStart(s, i);
        return;
      }
      case Request.SET_VRING_CALL:
      case Request.SET_VRING_ERR: {
        const v = Number(decodeU64(p) & 0xffffn);
        const ring = s.rings[this.ringIndex(v & VRING_INDEX_MASK)]!;
        const fd = v & VRING_NOFD_FLAG ? -1 : VhostUserServer.takeFds(msg)[0]!;
        const key = msg.request === Request.SET_VRING_CALL ? 'callFd' : 'errFd';
        const old = ring[key];
        ring[key] = fd;
        closeQuietly(old);
        // One interrupt on every new call fd (libvhost-user does the same "in case of I/O hang
        // after reconnecting"): used entries published while the frontend was not listening
        // (a backend finishing its last requests after QEMU dropped the connection, or killed
        // between publishing used->idx and signalling) were never announced, and with EVENT_IDX
        // the guest would never be interrupted for them again. A spurious interrupt is harmless.
        if (key === 'callFd' && fd >= 0) {
          try {
            posix.eventfdWrite(fd);
          } catch (err) {
            throw new ProtocolError(`ring ${v & VRING_INDEX_MASK}: its call file descriptor cannot be signalled (${(err as Error).message})`);
          }
        }
        return;
      }
      case Request.SET_VRING_ENABLE: {
        const { index, num } = decodeState(p);
        const i = this.ringIndex(index);
        if (num > 1) throw new ProtocolError(`ring ${i}: enable value ${num} is neither 0 nor 1`);
        s.rings[i]!.enabled = num === 1;
        if (num === 1) this.tryStart(s, i);
        else await this.stopRing(s, i);
        return;
      }
      case Request.GET_CONFIG: {
        const c = decodeConfig(p);
        try {
          return { payload: encodeConfig(c.offset, c.size, c.flags, this.device.readConfig(c.offset, c.size)) };
        } catch (err) {
          // An empty reply is the protocol's way of saying "error".
          this.log(`GET_CONFIG refused: ${(err as Error).message}`);
          return { payload: new Uint8Array(0) };
        }
      }
      case Request.SET_CONFIG: {
        const c = decodeConfig(p);
        try {
          this.device.writeConfig(c.offset, c.data);
        } catch (err) {
          throw new RequestRefused((err as Error).message);
        }
        return;
      }
      case Request.GET_INFLIGHT_FD: {
        const d = decodeInflight(p);
        const problem = inflightShapeProblem(d.numQueues, d.queueSize, this.device.numQueues);
        if (problem) {
          this.log(`GET_INFLIGHT_FD refused: ${problem}`);
          return { payload: encodeInflight({ mmapSize: 0, mmapOffset: 0, numQueues: d.numQueues, queueSize: d.queueSize }) };
        }
        const area = InflightArea.allocate(d.numQueues, d.queueSize);
        s.inflight?.close();
        s.inflight = area;
        return { payload: encodeInflight(area.desc), fds: [area.fd] };
      }
      case Request.SET_INFLIGHT_FD: {
        const d = decodeInflight(p);
        const [fd] = VhostUserServer.takeFds(msg);
        const problem = inflightShapeProblem(d.numQueues, d.queueSize, this.device.numQueues);
        if (problem) {
          closeQuietly(fd);
          throw new RequestRefused(problem);
        }
        let area: InflightArea;
        try {
          area = InflightArea.adopt(fd!, d);
        } catch (err) {
          throw new RequestRefused(`the inflight area cannot be mapped: ${(err as Error).message}`);
        }
        s.inflight?.close();
        s.inflight = area;
        // The frontend kept this area across a reconnect: requests in it are resubmitted as rings start.
        this.log(`inflight area handed back: ${d.numQueues} queue(s) of ${d.queueSize}`);
        return;
      }
      default:
        // checkBackendMessage lets only known requests through.
        throw new ProtocolError(`${requestName(msg.request)} is not handled`);
    }
  }

  private async setMemTable(s: Session, msg: Message): Promise<void> {
    const descs = decodeMemTable(msg.payload);
    const fds = VhostUserServer.takeFds(msg);
    // The device contract: every queue is stopped before the memory changes under it.
    const wasRunning = s.rings.map((r) => r.running);
    for (let i = 0; i < s.rings.length; i++) await this.stopRing(s, i);
    const table = MemoryTable.map(descs, fds);
    // A device may first finish I/O still pointing into the old table (retried parked writes).
    await this.device.setMemory(table.regions);
    s.memory.unmap();
    s.memory = table;
    this.log(`guest memory: ${table.regions.map((r) => `${hex(r.guestAddr)}+${hex(r.size)}`).join(', ')}`);
    wasRunning.forEach((was, i) => was && this.tryStart(s, i));
  }

  /** Starts the ring in the device once everything it needs is there. */
  private tryStart(s: Session, i: number): void {
    const ring = s.rings[i]!;
    if (ring.running || ring.broken || ring.kickFd < 0 || !ring.enabled || !ring.addr || ring.num === 0) return;
    const n = ring.num;
    const parts = [
      ['descriptor table', ring.addr.descAddr, 16 * n],
      ['available ring', ring.addr.availAddr, 6 + 2 * n],
      ['used ring', ring.addr.usedAddr, 6 + 8 * n],
    ] as const;
    const guest: number[] = [];
    for (const [what, addr, len] of parts) {
      const g = s.memory.frontendToGuest(addr, len);
      if (g === null) {
        this.breakRing(s, i, `ring ${i}: the ${what} (${len} bytes at user address ${hex(addr)}) is not inside one guest memory region`);
        return;
      }
      guest.push(g);
    }
    try {
      // With INFLIGHT_SHMFD the device tracks requests in the frontend's region and resubmits
      // what a previous backend left in flight; a device that does not know the field ignores it.
      const setup: TrackedVringSetup = { size: n, descAddr: guest[0]!, availAddr: guest[1]!, usedAddr: guest[2]!, lastAvailIdx: ring.base, notify: ring.notify };
      const area = s.inflight;
      if (area && i < area.desc.numQueues && s.protocolFeatures & protocolBit(ProtocolFeature.INFLIGHT_SHMFD)) setup.inflight = area.queueRegion(i);
      this.device.startQueue(i, setup);
    } catch (err) {
      this.breakRing(s, i, `ring ${i}: the device refused to start it: ${(err as Error).message}`);
      return;
    }
    ring.running = true;
    // Kicks that came before the ring could start were drained unseen: look at the ring now.
    this.kickDevice(s, i);
  }

  /** Stops passing kicks to the device: no new requests are taken (in-flight ones go on). */
  pause(): void {
    this.paused = true;
  }

  /** Passes kicks again, and looks at every running ring for what arrived meanwhile. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const s = this.session;
    if (s) s.rings.forEach((r, i) => r.running && this.kickDevice(s, i));
  }

  private kickDevice(s: Session, i: number): void {
    if (this.paused) return;
    try {
      this.device.kick(i);
    } catch (err) {
      this.breakRing(s, i, `ring ${i}: processing failed: ${(err as Error).message}`);
    }
  }

  private async stopRing(s: Session, i: number): Promise<void> {
    const ring = s.rings[i]!;
    if (!ring.running) return;
    ring.running = false;
    try {
      ring.base = await this.device.stopQueue(i);
    } catch (err) {
      this.log(`ring ${i}: stopping it failed: ${(err as Error).message}`);
    }
  }

  private breakRing(s: Session, i: number, reason: string): void {
    const ring = s.rings[i];
    if (!ring || ring.broken) return;
    ring.broken = reason;
    if (ring.running) void this.stopRing(s, i);
    this.log(`queue ${i} stopped: ${reason}`);
    if (ring.errFd >= 0) posix.eventfdWrite(ring.errFd);
    this.emit('broken', i, reason);
  }

  private onDeviceBroken(queue: number, reason: string): void {
    const s = this.session;
    if (!s) return;
    const ring = s.rings[queue];
    if (!ring || ring.broken) return;
    // The device has already stopped taking requests on this queue.
    ring.broken = reason;
    ring.running = false;
    this.log(`queue ${queue} stopped: ${reason}`);
    if (ring.errFd >= 0) posix.eventfdWrite(ring.errFd);
    this.emit('broken', queue, reason);
  }

  private endSession(s: Session, reason: string | null): void {
    if (this.session !== s) return;
    // A reason means this side ended it (bad input, shutdown); null means the frontend hung up.
    this.log(reason ? `closing the connection: ${reason}` : 'frontend disconnected');
    if (s.handshakeTimer) clearTimeout(s.handshakeTimer);
    s.handshakeTimer = null;
    this.acceptWatch?.stop();
    this.acceptWatch = null;
    this.teardown = (async () => {
      for (const r of s.rings) {
        r.kickWatch?.stop();
        r.kickWatch = null;
      }
      // Let the message being handled finish before the device is reset under it.
      await s.working;
      try {
        await this.device.reset();
      } catch (err) {
        this.log(`resetting the device failed: ${(err as Error).message}`);
      }
      s.memory.unmap();
      s.inflight?.close();
      s.inflight = null;
      for (const r of s.rings) {
        const fds = [r.kickFd, r.callFd, r.errFd];
        r.kickFd = r.callFd = r.errFd = -1;
        r.running = false;
        fds.forEach(closeQuietly);
      }
      this.session = null;
      this.teardown = null;
      this.emit('disconnected', reason);
      if (!this.closed) {
        this.watchAccept();
        this.acceptPending();
      }
    })();
  }

  /** Stops listening, ends the current connection (the device is reset, memory unmapped). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.acceptWatch?.stop();
    this.acceptWatch = null;
    closeQuietly(this.listenFd);
    this.listenFd = -1;
    try {
      unlinkSync(this.socketPath);
    } catch {
      /* already gone */
    }
    this.session?.channel.close('the server is shutting down');
    await this.teardown;
  }
}
