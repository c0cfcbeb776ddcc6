// The frontend (QEMU's) side of vhost-user: connects to a backend, negotiates, shares guest
// memory (a memfd mapped on both sides) and sets up vrings with kick/call eventfds. Used by
// `spindle loadgen` and by tests. The driver-side ring logic (filling descriptors, reading the
// used ring) lives in the virtio layer: this class only hands it addresses and eventfds.
import { posix, POLL_READABLE, SEALS_FIXED_SIZE, closeQuietly, type FdWatch } from '../dataplane/native/posix.js';
import { SpindleError, errnoOf } from '../shared/errors.js';
import { Channel } from '../dataplane/vhost-user/channel.js';
import {
  decodeConfig,
  decodeInflight,
  decodeState,
  decodeU64,
  encodeConfig,
  encodeInflight,
  encodeMemTable,
  encodeState,
  encodeU64,
  encodeVringAddr,
} from '../dataplane/vhost-user/codec.js';
import {
  F_PROTOCOL_FEATURES,
  FLAG_NEED_REPLY,
  FLAG_REPLY,
  ProtocolFeature,
  Request,
  VRING_NOFD_FLAG,
  protocolBit,
  requestName,
  type InflightDesc,
  type Message,
} from '../dataplane/vhost-user/protocol.js';

/** Guest RAM the frontend shares: a memfd mapped here, and by the backend after SET_MEM_TABLE. */
export interface SharedGuestMemory {
  fd: number;
  size: number;
  guestAddr: number;
  /** The "frontend virtual address" announced for it (vring addresses are sent in this space). */
  frontendAddr: number;
  /** The memfd mapped here (a view: it may start at an offset inside its ArrayBuffer). */
  memory: Uint8Array;
}

export interface VringAddresses {
  size: number;
  /** Guest physical addresses (inside a shared region). */
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  /** First avail index the backend processes (SET_VRING_BASE). */
  base?: number;
}

export interface VringHandle {
  readonly index: number;
  /** Tells the backend there are new avail entries (one eventfd write). */
  kick(): void;
  readonly kickFd: number;
  readonly callFd: number;
}

/** Where the frontend pretends to have mapped guest RAM: distinct from guest addresses on purpose. */
const FRONTEND_BASE = 0x7f00_0000_0000;

interface Pending {
  request: number;
  resolve(msg: Message): void;
  reject(err: Error): void;
}

export class VhostUserFrontend {
  private readonly channel: Channel;
  private chain: Promise<unknown> = Promise.resolve();
  private pending: Pending | null = null;
  private closedReason: string | null = null;
  private readonly callWatches = new Map<number, FdWatch>();
  private readonly ringFds = new Map<number, number[]>();
  private regions: SharedGuestMemory[] = [];
  features = 0n;
  protocolFeatures = 0n;

  private constructor(fd: number) {
    this.channel = new Channel(fd, {
      onMessage: (msg) => this.onMessage(msg),
      onClose: (reason) => this.onClose(reason ?? 'the backend closed the connection'),
    });
  }

  static connect(socketPath: string): VhostUserFrontend {
    try {
      return new VhostUserFrontend(posix.connectUnix(socketPath));
    } catch (err) {
      throw new SpindleError(
        'NOT_FOUND',
        `Cannot connect to the vhost-user backend at ${socketPath}: ${(err as Error).message}`,
        errnoOf(err),
      );
    }
  }

  /**
   * Shared guest RAM of `size` bytes at guest physical `guestAddr`: a memfd, mapped here, sealed
   * to its size as QEMU's memory-backend-memfd is (Spindle's backend maps nothing else). `seals`
   * 0 makes an unsealed one, for tests of a frontend that truncates memory it shared.
   */
  static allocateMemory(size: number, guestAddr = 0, seals = SEALS_FIXED_SIZE): SharedGuestMemory {
    const fd = posix.memfdCreate('spindle-guest-ram', size, seals);
    try {
      return { fd, size, guestAddr, frontendAddr: FRONTEND_BASE + guestAddr, memory: posix.mapShared(fd, 0, size) };
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
  }

  static freeMemory(m: SharedGuestMemory): void {
    posix.unmap(m.memory);
    closeQuietly(m.fd);
  }

  get isClosed(): boolean {
    return this.channel.isClosed;
  }

  private onMessage(msg: Message): void {
    const p = this.pending;
    if (!p || !(msg.flags & FLAG_REPLY) || msg.request !== p.request) {
      msg.fds.forEach(closeQuietly);
      this.channel.close(`unexpected message from the backend: ${requestName(msg.request)}${msg.flags & FLAG_REPLY ? ' reply' : ''}`);
      return;
    }
    this.pending = null;
    p.resolve(msg);
  }

  private onClose(reason: string): void {
    this.closedReason = reason;
    this.pending?.reject(new SpindleError('PROTOCOL_ERROR', `The vhost-user connection closed: ${reason}`));
    this.pending = null;
  }

  /**
   * Sends one request, strictly after the previous one finished. `reply` requests wait for the
   * backend's answer; others wait for an acknowledgement when REPLY_ACK was negotiated, and fail
   * with the backend's refusal.
   */
  request(request: number, payload?: Uint8Array, fds: readonly number[] = [], reply = false): Promise<Message | null> {
    const run = async (): Promise<Message | null> => {
      if (this.closedReason) throw new SpindleError('PROTOCOL_ERROR', `The vhost-user connection is closed: ${this.closedReason}`);
      const ack = !reply && (this.protocolFeatures & protocolBit(ProtocolFeature.REPLY_ACK)) !== 0n;
      const answer = reply || ack ? new Promise<Message>((resolve, reject) => (this.pending = { request, resolve, reject })) : null;
      this.channel.send(request, ack ? FLAG_NEED_REPLY : 0, payload, fds);
      if (!answer) return null;
      const msg = await answer;
      if (ack) {
        msg.fds.forEach(closeQuietly);
        if (msg.payload.length !== 8 || decodeU64(msg.payload) !== 0n) {
          throw new SpindleError('PROTOCOL_ERROR', `The backend refused ${requestName(request)}.`);
        }
        return null;
      }
      return msg;
    };
    const next = this.chain.then(run, run);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async u64(request: number): Promise<bigint> {
    const msg = (await this.request(request, undefined, [], true))!;
    if (msg.payload.length !== 8)
      throw new SpindleError('PROTOCOL_ERROR', `${requestName(request)}: the reply has ${msg.payload.length} bytes, expected 8`);
    return decodeU64(msg.payload);
  }

  getFeatures = (): Promise<bigint> => this.u64(Request.GET_FEATURES);
  getProtocolFeatures = (): Promise<bigint> => this.u64(Request.GET_PROTOCOL_FEATURES);
  getQueueNum = async (): Promise<number> => Number(await this.u64(Request.GET_QUEUE_NUM));

  async setFeatures(features: bigint): Promise<void> {
    await this.request(Request.SET_FEATURES, encodeU64(features));
    this.features = features;
  }

  async setProtocolFeatures(features: bigint): Promise<void> {
    await this.request(Request.SET_PROTOCOL_FEATURES, encodeU64(features));
    this.protocolFeatures = features;
  }

  /**
   * The usual opening: SET_OWNER, features (offered ∩ wanted, plus PROTOCOL_FEATURES when offered)
   * and protocol features (offered ∩ wanted). Returns what was negotiated.
   */
  async negotiate(wanted: { features: bigint; protocolFeatures: bigint }): Promise<{ features: bigint; protocolFeatures: bigint }> {
    await this.request(Request.SET_OWNER);
    const offered = await this.getFeatures();
    if (offered & F_PROTOCOL_FEATURES) {
      const proto = (await this.getProtocolFeatures()) & wanted.protocolFeatures;
      await this.setProtocolFeatures(proto);
    }
    await this.setFeatures(offered & (wanted.features | F_PROTOCOL_FEATURES));
    return { features: this.features, protocolFeatures: this.protocolFeatures };
  }

  async getConfig(offset: number, size: number): Promise<Uint8Array> {
    const msg = (await this.request(Request.GET_CONFIG, encodeConfig(offset, size, 0), [], true))!;
    if (msg.payload.length === 0)
      throw new SpindleError('PROTOCOL_ERROR', `The backend refused to read ${size} config bytes at offset ${offset}.`);
    const c = decodeConfig(msg.payload);
    if (c.size !== size || c.data.length !== size)
      throw new SpindleError('PROTOCOL_ERROR', `GET_CONFIG: the reply holds ${c.data.length} bytes, asked for ${size}`);
    return c.data.slice();
  }

  async setConfig(offset: number, data: Uint8Array): Promise<void> {
    await this.request(Request.SET_CONFIG, encodeConfig(offset, data.length, 0, data));
  }

  async setMemTable(regions: SharedGuestMemory[]): Promise<void> {
    const payload = encodeMemTable(
      regions.map((r) => ({ guestAddr: r.guestAddr, size: r.size, frontendAddr: r.frontendAddr, mmapOffset: 0 })),
    );
    await this.request(
      Request.SET_MEM_TABLE,
      payload,
      regions.map((r) => r.fd),
    );
    this.regions = regions;
  }

  /** The frontend address of a guest physical address (vring addresses travel in this space). */
  toFrontendAddr(guestAddr: number): number {
    const r = this.regions.find((m) => guestAddr >= m.guestAddr && guestAddr < m.guestAddr + m.size);
    if (!r) throw new SpindleError('INVALID_ARGUMENT', `Guest address 0x${guestAddr.toString(16)} is not in shared memory.`);
    return r.frontendAddr + (guestAddr - r.guestAddr);
  }

  /**
   * SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_CALL, SET_VRING_KICK for ring
   * `index`, with fresh eventfds; `onCall` runs when the backend signals used buffers.
   */
  async setupVring(index: number, a: VringAddresses, onCall: () => void): Promise<VringHandle> {
    await this.request(Request.SET_VRING_NUM, encodeState(index, a.size));
    await this.request(Request.SET_VRING_BASE, encodeState(index, a.base ?? 0));
    await this.request(
      Request.SET_VRING_ADDR,
      encodeVringAddr({
        index,
        flags: 0,
        descAddr: this.toFrontendAddr(a.descAddr),
        usedAddr: this.toFrontendAddr(a.usedAddr),
        availAddr: this.toFrontendAddr(a.availAddr),
        logAddr: 0,
      }),
    );
    this.releaseRing(index);
    const kickFd = posix.eventfdCreate();
    const callFd = posix.eventfdCreate();
    this.ringFds.set(index, [kickFd, callFd]);
    this.callWatches.set(
      index,
      posix.watchFd(callFd, POLL_READABLE, (_e, value) => value && onCall(), true),
    );
    await this.request(Request.SET_VRING_CALL, encodeU64(index), [callFd]);
    await this.request(Request.SET_VRING_KICK, encodeU64(index), [kickFd]);
    return { index, kickFd, callFd, kick: () => posix.eventfdWrite(kickFd) };
  }

  async setVringKickWithoutFd(index: number): Promise<void> {
    await this.request(Request.SET_VRING_KICK, encodeU64(index | VRING_NOFD_FLAG));
  }

  async enableVring(index: number, enable: boolean): Promise<void> {
    await this.request(Request.SET_VRING_ENABLE, encodeState(index, enable ? 1 : 0));
  }

  /** Stops ring `index` in the backend; resolves with its next avail index. */
  async getVringBase(index: number): Promise<number> {
    const msg = (await this.request(Request.GET_VRING_BASE, encodeState(index, 0), [], true))!;
    if (msg.payload.length !== 8)
      throw new SpindleError('PROTOCOL_ERROR', `GET_VRING_BASE: the reply has ${msg.payload.length} bytes, expected 8`);
    this.releaseRing(index);
    return decodeState(msg.payload).num;
  }

  /** GET_INFLIGHT_FD: the backend's inflight area (mapped here), or null if it declined. */
  async getInflight(numQueues: number, queueSize: number): Promise<{ fd: number; desc: InflightDesc } | null> {
    const msg = (await this.request(
      Request.GET_INFLIGHT_FD,
      encodeInflight({ mmapSize: 0, mmapOffset: 0, numQueues, queueSize }),
      [],
      true,
    ))!;
    const desc = decodeInflight(msg.payload);
    if (desc.mmapSize === 0) {
      msg.fds.forEach(closeQuietly);
      return null;
    }
    if (msg.fds.length !== 1) {
      msg.fds.forEach(closeQuietly);
      throw new SpindleError('PROTOCOL_ERROR', 'GET_INFLIGHT_FD: the reply carries no file descriptor');
    }
    return { fd: msg.fds[0]!, desc };
  }

  async setInflight(fd: number, desc: InflightDesc): Promise<void> {
    await this.request(Request.SET_INFLIGHT_FD, encodeInflight(desc), [fd]);
  }

  private releaseRing(index: number): void {
    this.callWatches.get(index)?.stop();
    this.callWatches.delete(index);
    this.ringFds.get(index)?.forEach(closeQuietly);
    this.ringFds.delete(index);
  }

  /** Closes the connection and this side's eventfds (shared memory stays with its owner). */
  close(): void {
    for (const i of [...this.ringFds.keys()]) this.releaseRing(i);
    this.channel.close(null);
  }
}
