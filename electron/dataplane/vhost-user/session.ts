// One frontend connection: its negotiated features, memory table, inflight area and rings, the
// messages it sent handled strictly in order (each by its entry in handlers.ts), and the rings
// started in, kicked into and stopped in the device. Dropped whole on disconnect.
import { posix, closeQuietly, type FdWatch, type PeerCredentials } from '../native/posix.js';
import type { VirtioDevice } from '../virtio/types.js';
import type { TrackedVringSetup } from '../virtio/inflight-log.js';
import type { Channel } from './channel.js';
import { ProtocolError, checkBackendMessage, encodeMessage, encodeU64, needsReply } from './codec.js';
import { MESSAGE_HANDLERS } from './handlers.js';
import { MemoryTable } from './memory-table.js';
import type { InflightArea } from './inflight.js';
import { BackendRequest, FLAG_REPLY, ProtocolFeature, protocolBit, requestName, type Message, type VringAddrDesc } from './protocol.js';
import { RequestRefused, RingRefused } from './refusals.js';

export interface RingState {
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

/** What a session needs from the server that owns it. */
export interface SessionHost {
  readonly device: VirtioDevice;
  /** Kicks are not passed to the device while paused. */
  readonly paused: boolean;
  log(line: string): void;
  /** Every well-formed request as it is handled. */
  requested(name: string): void;
  /** A ring stopped because of bad input. */
  ringBroken(queue: number, reason: string): void;
  /** SET_OWNER: this session is the disk's frontend now. */
  own(s: Session): void;
}

export const hex = (n: number): string => `0x${n.toString(16)}`;

/** Takes the message's fds: from here on the handler owns them. */
export function takeFds(msg: Message): number[] {
  return msg.fds.splice(0);
}

export class Session {
  /** SET_OWNER received: this connection is the disk's frontend until it goes. */
  owned = false;
  /** Messages received (a connection that sent none is told apart in the log). */
  received = 0;
  handshakeTimer: NodeJS.Timeout | null = null;
  features = 0n;
  protocolFeatures = 0n;
  memory = MemoryTable.empty();
  inflight: InflightArea | null = null;
  /** The backend's own request channel (SET_BACKEND_REQ_FD), or -1. */
  backendReqFd = -1;
  readonly rings: RingState[];
  readonly queue: Message[] = [];
  /** Resolves when the message being handled (if any) is done. */
  working: Promise<void> = Promise.resolve();
  draining = false;

  constructor(
    readonly host: SessionHost,
    readonly channel: Channel,
    readonly peer: PeerCredentials | null,
  ) {
    this.rings = Array.from({ length: host.device.numQueues }, () => {
      const ring: RingState = {
        num: 0,
        addr: null,
        base: 0,
        kickFd: -1,
        callFd: -1,
        errFd: -1,
        kickWatch: null,
        enabled: false,
        running: false,
        broken: null,
        // One eventfd write per completed batch: the device calls this, never per request.
        notify: () => {
          if (ring.callFd >= 0) posix.eventfdWrite(ring.callFd);
        },
      };
      return ring;
    });
  }

  get device(): VirtioDevice {
    return this.host.device;
  }

  get replyAck(): boolean {
    return (this.protocolFeatures & protocolBit(ProtocolFeature.REPLY_ACK)) !== 0n;
  }

  /** Queues a message from the channel; handled after those before it. */
  receive(msg: Message): void {
    this.received++;
    this.queue.push(msg);
    if (!this.draining) void this.drain();
  }

  fail(reason: string): void {
    this.channel.close(reason);
  }

  private async drain(): Promise<void> {
    this.draining = true;
    let done!: () => void;
    try {
      while (this.queue.length && !this.channel.isClosed) {
        const msg = this.queue.shift()!;
        this.working = new Promise<void>((r) => (done = r));
        try {
          await this.handle(msg);
        } finally {
          done();
        }
      }
    } finally {
      this.draining = false;
      // A closed channel leaves unhandled messages: their fds are ours to close.
      if (this.channel.isClosed) for (const m of this.queue.splice(0)) m.fds.forEach(closeQuietly);
    }
  }

  private async handle(msg: Message): Promise<void> {
    const name = requestName(msg.request);
    const shape = checkBackendMessage(msg);
    if (shape) {
      msg.fds.forEach(closeQuietly);
      this.fail(shape);
      return;
    }
    this.host.requested(name);
    try {
      // checkBackendMessage lets only known requests through, and each has its handler.
      const handler = MESSAGE_HANDLERS.get(msg.request);
      if (!handler) throw new ProtocolError(`${name} is not handled`);
      const reply = await handler(this, msg);
      if (this.channel.isClosed) return;
      if (reply) this.channel.send(msg.request, FLAG_REPLY, reply.payload, reply.fds);
      else if (this.replyAck && needsReply(msg)) this.channel.send(msg.request, FLAG_REPLY, encodeU64(0));
    } catch (err) {
      msg.fds.forEach(closeQuietly);
      if (err instanceof RequestRefused) {
        this.host.log(`${name} refused: ${err.message}`);
        if (err instanceof RingRefused) this.breakRing(err.ring, err.message);
        if (this.replyAck && needsReply(msg)) this.channel.send(msg.request, FLAG_REPLY, encodeU64(1));
      } else if (err instanceof ProtocolError) {
        this.fail(`${name}: ${err.message}`);
      } else {
        // A bug or an unexpected OS error: this connection cannot be trusted to go on.
        this.fail(`${name} failed: ${(err as Error).stack ?? err}`);
      }
    }
  }

  ringIndex(index: number): number {
    if (index >= this.device.numQueues) {
      throw new ProtocolError(`vring index ${index} is out of range (the device has ${this.device.numQueues} queues)`);
    }
    return index;
  }

  /** Starts the ring in the device once everything it needs is there. */
  tryStart(i: number): void {
    const ring = this.rings[i]!;
    if (ring.running || ring.broken || ring.kickFd < 0 || !ring.enabled || !ring.addr || ring.num === 0) return;
    const n = ring.num;
    const parts = [
      ['descriptor table', ring.addr.descAddr, 16 * n],
      ['available ring', ring.addr.availAddr, 6 + 2 * n],
      ['used ring', ring.addr.usedAddr, 6 + 8 * n],
    ] as const;
    const guest: number[] = [];
    for (const [what, addr, len] of parts) {
      const g = this.memory.frontendToGuest(addr, len);
      if (g === null) {
        this.breakRing(i, `ring ${i}: the ${what} (${len} bytes at user address ${hex(addr)}) is not inside one guest memory region`);
        return;
      }
      guest.push(g);
    }
    try {
      // With INFLIGHT_SHMFD the device tracks requests in the frontend's region and resubmits
      // what a previous backend left in flight; a device that does not know the field ignores it.
      const setup: TrackedVringSetup = {
        size: n,
        descAddr: guest[0]!,
        availAddr: guest[1]!,
        usedAddr: guest[2]!,
        lastAvailIdx: ring.base,
        notify: ring.notify,
      };
      const area = this.inflight;
      if (area && i < area.desc.numQueues && this.protocolFeatures & protocolBit(ProtocolFeature.INFLIGHT_SHMFD))
        setup.inflight = area.queueRegion(i);
      this.device.startQueue(i, setup);
    } catch (err) {
      this.breakRing(i, `ring ${i}: the device refused to start it: ${(err as Error).message}`);
      return;
    }
    ring.running = true;
    // Kicks that came before the ring could start were drained unseen: look at the ring now.
    this.kickDevice(i);
  }

  kickDevice(i: number): void {
    if (this.host.paused) return;
    try {
      this.device.kick(i);
    } catch (err) {
      this.breakRing(i, `ring ${i}: processing failed: ${(err as Error).message}`);
    }
  }

  async stopRing(i: number): Promise<void> {
    const ring = this.rings[i]!;
    if (!ring.running) return;
    ring.running = false;
    try {
      ring.base = await this.device.stopQueue(i);
    } catch (err) {
      this.host.log(`ring ${i}: stopping it failed: ${(err as Error).message}`);
    }
  }

  breakRing(i: number, reason: string): void {
    const ring = this.rings[i];
    if (!ring || ring.broken) return;
    ring.broken = reason;
    if (ring.running) void this.stopRing(i);
    this.reportBroken(i, reason);
  }

  /** The device stopped a queue by itself (a malformed chain): it takes no requests there any more. */
  deviceBroke(queue: number, reason: string): void {
    const ring = this.rings[queue];
    if (!ring || ring.broken) return;
    ring.broken = reason;
    ring.running = false;
    this.reportBroken(queue, reason);
  }

  private reportBroken(i: number, reason: string): void {
    const ring = this.rings[i]!;
    this.host.log(`queue ${i} stopped: ${reason}`);
    if (ring.errFd >= 0) posix.eventfdWrite(ring.errFd);
    this.host.ringBroken(i, reason);
  }

  /**
   * Tells the frontend the configuration space changed (BACKEND_CONFIG_CHANGE_MSG on the backend
   * channel; QEMU then reads it with GET_CONFIG and interrupts the guest). No reply is asked for.
   * Returns a sentence when the frontend cannot be told (it did not negotiate BACKEND_REQ and
   * CONFIG, or gave no channel), else null.
   */
  notifyConfigChange(): string | null {
    const need = protocolBit(ProtocolFeature.BACKEND_REQ) | protocolBit(ProtocolFeature.CONFIG);
    if ((this.protocolFeatures & need) !== need || this.backendReqFd < 0)
      return 'the frontend did not set up the backend request channel (vhost-user BACKEND_REQ and CONFIG), so the guest sees the new size after its next restart';
    const bytes = encodeMessage(BackendRequest.CONFIG_CHANGE_MSG, 0);
    try {
      const n = posix.sendMsg(this.backendReqFd, bytes, 0, bytes.length);
      if (n !== bytes.length) return 'the backend request channel is full; the guest sees the new size after its next restart';
    } catch (err) {
      return `the backend request channel failed (${(err as Error).message})`;
    }
    return null;
  }

  /** After disconnect: the device is reset once the message being handled is done, then every
   *  mapping and fd of this session goes. */
  async tearDown(): Promise<void> {
    for (const r of this.rings) {
      r.kickWatch?.stop();
      r.kickWatch = null;
    }
    // Let the message being handled finish before the device is reset under it.
    await this.working;
    try {
      await this.device.reset();
    } catch (err) {
      this.host.log(`resetting the device failed: ${(err as Error).message}`);
    }
    this.memory.unmap();
    this.inflight?.close();
    this.inflight = null;
    closeQuietly(this.backendReqFd);
    this.backendReqFd = -1;
    for (const r of this.rings) {
      const fds = [r.kickFd, r.callFd, r.errFd];
      r.kickFd = r.callFd = r.errFd = -1;
      r.running = false;
      fds.forEach(closeQuietly);
    }
  }
}
