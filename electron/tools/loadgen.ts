// The load generator behind `spindle loadgen` and the benchmarks: plays a guest to any vhost-user-blk backend (Spindle's own export or
// qemu-storage-daemon): shared memfd RAM, split rings filled by DriverRing, kick/call eventfds,
// and reports IOPS, MB/s, latency percentiles and errors. `--verify` writes a seeded pattern
// over the region and reads it back.
//
// Hot path: every request slot (header, status byte, data buffer, ring head) is preallocated in
// guest memory and typed arrays; a completion batch is collected, refilled and published with
// one kick per queue; no objects are allocated per I/O.
import { performance } from 'node:perf_hooks';
import { SpindleError } from '../shared/errors.js';
import { DriverRing } from './driver-ring.js';
import {
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_MQ,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_SIZE_MAX,
  VIRTIO_BLK_F_TOPOLOGY,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
} from '../dataplane/virtio/virtio-blk.js';
import { VhostUserFrontend, type SharedGuestMemory, type VringHandle } from './vhost-user-frontend.js';
import { F_PROTOCOL_FEATURES, ProtocolFeature, protocolBit } from '../dataplane/vhost-user/protocol.js';
import { isRandom, writes, type RwMode, type Workload } from './workload.js';

export const MAX_IODEPTH = 256;
export const MAX_RING = 1024; // libvhost-user backends (qemu-storage-daemon) accept no larger rings
/** Default --timeout: how long the backend may take to answer a handshake message, or to complete
 *  anything while requests are in flight, before loadgen gives up on it. */
export const DEFAULT_TIMEOUT_SEC = 30;

const bit = (n: number) => 1n << BigInt(n);

export interface LoadgenOptions extends Workload {
  socket: string;
  queues: number;
  runtimeSec: number;
  /** Bytes of the disk to use from offset 0 (0: all of it). */
  size: number;
  verify: boolean;
  /** Only the read-back pass of --verify: checks the pattern an earlier --verify run (same seed, bs, region) wrote. */
  verifyOnly: boolean;
  /** Required here: the command always passes it (Workload's default, 50, is the CLI's). */
  rwmixread: number;
  seed: number;
  /** Stop after this many passes over the region (a fixed number of bytes, like dd count=; random
   *  modes: as many requests as that many passes make); runtimeSec still caps it. */
  passes?: number;
  /** Stops issuing new requests; the run ends once those in flight complete (the result covers what was done). */
  signal?: AbortSignal;
  /** Seconds the backend may take to answer each vhost-user message, to complete anything while
   *  requests are in flight, and to finish those in flight after the runtime (default 30). */
  timeoutSec?: number;
}

export interface LoadgenResult {
  rw: RwMode;
  bs: number;
  iodepth: number;
  queues: number;
  sizeBytes: number;
  runtimeSec: number;
  ios: number;
  reads: number;
  writes: number;
  errors: number;
  iops: number;
  /** Megabytes (10^6 bytes) per second. */
  mbps: number;
  latencyUs: { p50: number; p99: number; mean: number; max: number };
  verify: { blocks: number; mismatches: number; firstMismatchOffset: number | null } | null;
}

/** Latency histogram: 32 buckets per power of two of nanoseconds (about 2% resolution). */
class LatencyHistogram {
  private readonly buckets = new Float64Array(64 * 32);
  count = 0;
  sum = 0;
  max = 0;

  add(ns: number): void {
    const v = ns < 1 ? 1 : ns;
    this.buckets[Math.min(this.buckets.length - 1, Math.floor(Math.log2(v) * 32))]++;
    this.count++;
    this.sum += v;
    if (v > this.max) this.max = v;
  }

  /** The q-quantile in nanoseconds (upper edge of its bucket). */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const target = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i];
      if (seen >= target) return Math.min(this.max, 2 ** ((i + 1) / 32));
    }
    return this.max;
  }
}

/** xorshift32: a seeded, allocation-free random stream. */
class Rng {
  constructor(private x: number) {
    if (this.x === 0) this.x = 0x9e3779b9;
  }

  next(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x;
    return x >>> 0;
  }

  /** Uniform integer in [0, n) for n up to 2^53. */
  below(n: number): number {
    return Math.floor((((this.next() >>> 5) * 67108864 + (this.next() >>> 6)) / 9007199254740992) * n);
  }
}

/** The verify pattern of a block: a function of seed and byte offset only, so a read can be checked alone. */
function fillPattern(words: Uint32Array, start: number, count: number, seed: number, offset: number): void {
  let x = (seed ^ Math.imul((offset / 512) >>> 0, 0x9e3779b1) ^ Math.floor(offset / 2 ** 41)) >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[start + i] = x;
  }
}

function checkPattern(words: Uint32Array, start: number, count: number, seed: number, offset: number): boolean {
  let x = (seed ^ Math.imul((offset / 512) >>> 0, 0x9e3779b1) ^ Math.floor(offset / 2 ** 41)) >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    if (words[start + i] !== x >>> 0) return false;
  }
  return true;
}

const enum Phase {
  Run,
  VerifyWrite,
  VerifyRead,
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** One virtqueue and its iodepth request slots. */
class QueueDriver {
  readonly ring: DriverRing;
  handle: VringHandle | null = null;
  private readonly slotOfHead: Int32Array;
  private readonly startedAt: Float64Array;
  private readonly slotOffset: Float64Array;
  private readonly slotIsRead: Uint8Array;
  private readonly hdrAddr: Float64Array;
  private readonly dataAddr: Float64Array;
  private readonly hdrView: DataView;
  private readonly status: Uint8Array;
  private readonly words: Uint32Array;
  private readonly rng: Rng;
  /** Position in this queue's stripe during a pass, and the stride that orders it. */
  private cursor = 0;
  private stride = 1;
  /** Sequential passes completed over this queue's stripe (for LoadgenOptions.passes). */
  passesDone = 0;
  /** Random requests issued in the run (for LoadgenOptions.passes). */
  randomIssued = 0;
  private readonly onUsedBound: (head: number, len: number) => void;

  constructor(
    private readonly lg: LoadGenerator,
    readonly index: number,
    mem: SharedGuestMemory,
    ringAt: number,
    ringSize: number,
    eventIdx: boolean,
    slotsAt: number,
    dataAt: number,
  ) {
    const o = lg.opts;
    this.ring = new DriverRing(mem.memory, mem.guestAddr, ringAt, ringSize, { eventIdx });
    this.slotOfHead = new Int32Array(ringSize).fill(-1);
    this.startedAt = new Float64Array(o.iodepth);
    this.slotOffset = new Float64Array(o.iodepth);
    this.slotIsRead = new Uint8Array(o.iodepth);
    this.hdrAddr = new Float64Array(o.iodepth);
    this.dataAddr = new Float64Array(o.iodepth);
    for (let s = 0; s < o.iodepth; s++) {
      this.hdrAddr[s] = slotsAt + 32 * s; // 16-byte header, status byte at +16
      this.dataAddr[s] = dataAt + o.bs * s;
    }
    // mem.memory may start at an offset inside its ArrayBuffer (mapped inside V8's heap).
    const { buffer, byteOffset, byteLength } = mem.memory;
    this.hdrView = new DataView(buffer, byteOffset, byteLength);
    this.status = mem.memory;
    this.words = new Uint32Array(buffer, byteOffset, byteLength >>> 2);
    this.rng = new Rng((o.seed * 7919 + index * 104729 + 1) >>> 0);
    this.onUsedBound = (head, len) => this.onUsed(head, len);
  }

  /** Starts a request in every free slot and kicks once. */
  fill(): void {
    for (let s = 0; s < this.lg.opts.iodepth; s++) if (!this.issue(s)) break;
    this.flush();
  }

  private flush(): void {
    if (this.ring.publish()) this.handle!.kick();
  }

  /** Puts one request in slot s on the ring; false when the workload has nothing more to issue. */
  private issue(s: number): boolean {
    const lg = this.lg;
    const block = lg.nextBlock(this);
    if (block < 0) return false;
    const bs = lg.opts.bs;
    const offset = block * bs;
    const read = lg.isRead(this);
    const hdr = this.hdrAddr[s];
    this.hdrView.setUint32(hdr, read ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, true);
    this.hdrView.setUint32(hdr + 4, 0, true);
    const sector = offset / 512;
    this.hdrView.setUint32(hdr + 8, sector % 0x1_0000_0000, true);
    this.hdrView.setUint32(hdr + 12, Math.floor(sector / 0x1_0000_0000), true);
    this.status[hdr + 16] = 0xff;
    if (!read && lg.patterned) fillPattern(this.words, this.dataAddr[s] / 4, bs / 4, lg.opts.seed, offset);
    const head = this.ring.addRequest(hdr, this.dataAddr[s], bs, read, hdr + 16);
    if (head < 0) throw new Error('loadgen: ring full (slot accounting bug)');
    this.slotOfHead[head] = s;
    this.slotOffset[s] = offset;
    this.slotIsRead[s] = read ? 1 : 0;
    this.startedAt[s] = performance.now();
    lg.inFlight++;
    return true;
  }

  /** The call eventfd fired: collect, refill, kick once. */
  onCall(): void {
    this.ring.collect(this.onUsedBound);
    this.flush();
    this.lg.progress();
  }

  /** Queue s (after collect) for reissue; called once per used entry. */
  private onUsed(head: number, _len: number): void {
    const s = this.slotOfHead[head];
    if (s < 0) throw new Error(`loadgen: the backend completed descriptor ${head}, which is not a request head`);
    this.slotOfHead[head] = -1;
    const lg = this.lg;
    lg.inFlight--;
    lg.latency.add((performance.now() - this.startedAt[s]) * 1e6);
    const st = this.status[this.hdrAddr[s] + 16];
    const read = this.slotIsRead[s] === 1;
    if (read) lg.reads++;
    else lg.writes++;
    if (st !== 0) lg.errors++;
    else if (read && lg.phase === Phase.VerifyRead) {
      lg.verified++;
      if (!checkPattern(this.words, this.dataAddr[s] / 4, lg.opts.bs / 4, lg.opts.seed, this.slotOffset[s])) {
        if (lg.mismatches++ === 0) lg.firstMismatch = this.slotOffset[s];
      }
    }
    this.issue(s);
  }

  /** Starts a pass over this queue's stripe [start, end): in order, or (shuffled) in an order
   *  that visits every block once, stepping by a stride coprime with the stripe length. */
  startPass(shuffled: boolean): void {
    const [start, end] = this.lg.stripe(this);
    const n = end - start;
    this.cursor = 0;
    this.stride = 1;
    if (shuffled && n > 2) {
      let p = Math.floor(n * 0.6180339887) | 1;
      while (gcd(p, n) !== 1) p += 2;
      this.stride = p;
    }
  }

  /** The next block of the pass, or -1 once every block of the stripe was visited. */
  nextInPass(): number {
    const [start, end] = this.lg.stripe(this);
    const n = end - start;
    if (this.cursor >= n) return -1;
    return start + ((this.cursor++ * this.stride) % n);
  }

  randomBlock(n: number): number {
    return this.rng.below(n);
  }

  randomPercent(): number {
    return this.rng.next() % 100;
  }
}

class LoadGenerator {
  readonly latency = new LatencyHistogram();
  reads = 0;
  writes = 0;
  errors = 0;
  verified = 0;
  mismatches = 0;
  firstMismatch: number | null = null;
  phase: Phase = Phase.Run;
  /** Blocks of bs in the region. */
  blocks = 0;
  patterned = false;
  inFlight = 0;
  private deadline = 0;
  private lastProgress = 0;
  private readonly queues: QueueDriver[] = [];
  private finish: (() => void) | null = null;
  private readonly timeoutMs: number;

  constructor(readonly opts: LoadgenOptions) {
    this.timeoutMs = (opts.timeoutSec ?? DEFAULT_TIMEOUT_SEC) * 1000;
  }

  /** `reply`, or a SpindleError once the backend has kept us waiting for longer than the timeout. */
  private async answer<T>(reply: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new SpindleError(
              'IO_ERROR',
              `The backend at ${this.opts.socket} did not answer ${what} within ${this.timeoutMs / 1000} s (--timeout); it accepted the connection but is not serving.`,
            ),
          ),
        this.timeoutMs,
      );
    });
    try {
      return await Promise.race([reply, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Queue q's share of the region (sequential and verify passes), as [first block, end). */
  stripe(q: QueueDriver): [number, number] {
    const per = Math.floor(this.blocks / this.opts.queues);
    const start = per * q.index;
    return [start, q.index === this.opts.queues - 1 ? this.blocks : start + per];
  }

  nextBlock(q: QueueDriver): number {
    if (this.phase !== Phase.Run) return q.nextInPass();
    if (performance.now() >= this.deadline || this.opts.signal?.aborted) return -1;
    const rw = this.opts.rw;
    if (rw === 'read' || rw === 'write') {
      const b = q.nextInPass();
      if (b >= 0) return b;
      if (this.opts.passes !== undefined && ++q.passesDone >= this.opts.passes) return -1;
      q.startPass(false);
      return q.nextInPass();
    }
    if (this.opts.passes !== undefined) {
      const [start, end] = this.stripe(q);
      if (q.randomIssued >= this.opts.passes * (end - start)) return -1;
      q.randomIssued++;
    }
    return q.randomBlock(this.blocks);
  }

  isRead(q: QueueDriver): boolean {
    switch (this.phase) {
      case Phase.VerifyWrite:
        return false;
      case Phase.VerifyRead:
        return true;
      default:
        break;
    }
    const rw = this.opts.rw;
    if (rw === 'randrw') return q.randomPercent() < this.opts.rwmixread;
    return rw === 'read' || rw === 'randread';
  }

  progress(): void {
    this.lastProgress = performance.now();
    if (this.finish && this.inFlight === 0) {
      const f = this.finish;
      this.finish = null;
      f();
    }
  }

  /** Runs one phase until every queue has nothing left to issue and nothing in flight. */
  private async runPhase(phase: Phase, seconds: number): Promise<void> {
    this.phase = phase;
    this.deadline = performance.now() + seconds * 1000;
    const shuffled = isRandom(this.opts.rw);
    for (const q of this.queues) q.startPass(phase !== Phase.Run && shuffled);
    const done = new Promise<void>((resolve) => (this.finish = resolve));
    this.lastProgress = performance.now();
    for (const q of this.queues) q.fill();
    this.progress();
    let stalled: SpindleError | null = null;
    const giveUp = (sentence: string): void => {
      stalled = new SpindleError('IO_ERROR', sentence);
      const f = this.finish!;
      this.finish = null;
      f();
    };
    const watchdog = setInterval(
      () => {
        if (!this.finish) return;
        const now = performance.now();
        if (now - this.lastProgress > this.timeoutMs) {
          giveUp(`The backend completed nothing for ${this.timeoutMs / 1000} s with ${this.inFlight} request(s) in flight (--timeout).`);
        } else if (now > this.deadline + this.timeoutMs) {
          giveUp(`${this.inFlight} request(s) were still in flight ${this.timeoutMs / 1000} s after the run's end (--timeout).`);
        }
      },
      Math.min(1000, this.timeoutMs / 4),
    );
    try {
      await done;
    } finally {
      clearInterval(watchdog);
    }
    if (stalled) throw stalled;
  }

  async run(): Promise<LoadgenResult> {
    const o = this.opts;
    const fe = VhostUserFrontend.connect(o.socket);
    let mem: SharedGuestMemory | null = null;
    try {
      const wanted =
        bit(VIRTIO_F_VERSION_1) |
        bit(VIRTIO_RING_F_EVENT_IDX) |
        bit(VIRTIO_BLK_F_MQ) |
        bit(VIRTIO_BLK_F_BLK_SIZE) |
        bit(VIRTIO_BLK_F_RO) |
        bit(VIRTIO_BLK_F_FLUSH) |
        bit(VIRTIO_BLK_F_SIZE_MAX) |
        bit(VIRTIO_BLK_F_SEG_MAX) |
        bit(VIRTIO_BLK_F_TOPOLOGY);
      const got = await this.answer(
        fe.negotiate({
          features: wanted,
          protocolFeatures: protocolBit(ProtocolFeature.MQ) | protocolBit(ProtocolFeature.REPLY_ACK) | protocolBit(ProtocolFeature.CONFIG),
        }),
        'the feature negotiation',
      );
      if (!(got.features & bit(VIRTIO_F_VERSION_1))) {
        throw new SpindleError('PROTOCOL_ERROR', 'The backend does not offer VIRTIO_F_VERSION_1; loadgen speaks only virtio 1.x.');
      }
      if (!(got.protocolFeatures & protocolBit(ProtocolFeature.CONFIG))) {
        throw new SpindleError(
          'PROTOCOL_ERROR',
          'The backend does not offer the CONFIG protocol feature, so its disk size cannot be read.',
        );
      }
      const eventIdx = (got.features & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
      const cfg = new DataView((await this.answer(fe.getConfig(0, 60), 'GET_CONFIG')).buffer);
      const capacity = Number(cfg.getBigUint64(0, true)) * 512;
      const blkSize = got.features & bit(VIRTIO_BLK_F_BLK_SIZE) ? cfg.getUint32(20, true) : 512;
      const maxQueues = got.features & bit(VIRTIO_BLK_F_MQ) ? cfg.getUint16(34, true) : 1;
      if (got.protocolFeatures & protocolBit(ProtocolFeature.MQ)) {
        const n = await this.answer(fe.getQueueNum(), 'GET_QUEUE_NUM');
        if (o.queues > n) throw new SpindleError('INVALID_ARGUMENT', `The backend serves at most ${n} queues; asked for ${o.queues}.`);
      }
      if (o.queues > Math.max(1, maxQueues)) {
        throw new SpindleError('INVALID_ARGUMENT', `The disk offers ${Math.max(1, maxQueues)} queue(s); asked for ${o.queues}.`);
      }
      const needsWrite = (o.verify && !o.verifyOnly) || writes(o.rw);
      if (needsWrite && got.features & bit(VIRTIO_BLK_F_RO)) {
        throw new SpindleError('READ_ONLY', `The disk is read-only; '${o.rw}'${o.verify ? ' with --verify' : ''} needs to write.`);
      }
      if (o.bs % blkSize !== 0) {
        throw new SpindleError('INVALID_ARGUMENT', `--bs ${o.bs} is not a multiple of the disk's ${blkSize}-byte logical block.`);
      }
      const size = o.size || capacity;
      if (size > capacity) throw new SpindleError('INVALID_ARGUMENT', `--size ${size} is larger than the disk (${capacity} bytes).`);
      this.blocks = Math.floor(size / o.bs);
      if (this.blocks < o.queues)
        throw new SpindleError('INVALID_ARGUMENT', `The region of ${size} bytes holds fewer than one ${o.bs}-byte block per queue.`);
      this.patterned = o.verify || o.verifyOnly;

      // Guest RAM: per queue a ring, 32 bytes of header + status per slot, then data buffers.
      let ringSize = 8;
      while (ringSize < 3 * o.iodepth) ringSize *= 2;
      const page = 4096;
      const align = (n: number) => Math.ceil(n / page) * page;
      const perQueue = align(DriverRing.bytesNeeded(ringSize)) + align(32 * o.iodepth) + align(o.bs * o.iodepth);
      mem = VhostUserFrontend.allocateMemory(align(perQueue * o.queues + page));
      await this.answer(fe.setMemTable([mem]), 'SET_MEM_TABLE');
      for (let q = 0; q < o.queues; q++) {
        const base = mem.guestAddr + page + q * perQueue;
        const slotsAt = base + align(DriverRing.bytesNeeded(ringSize));
        const qd = new QueueDriver(this, q, mem, base, ringSize, eventIdx, slotsAt, slotsAt + align(32 * o.iodepth));
        this.queues.push(qd);
        qd.handle = await this.answer(
          fe.setupVring(
            q,
            {
              size: ringSize,
              descAddr: qd.ring.descAddr,
              availAddr: qd.ring.availAddr,
              usedAddr: qd.ring.usedAddr,
            },
            () => qd.onCall(),
          ),
          `the setup of queue ${q}`,
        );
        // With PROTOCOL_FEATURES negotiated, rings start disabled until SET_VRING_ENABLE.
        if (got.features & F_PROTOCOL_FEATURES) await this.answer(fe.enableVring(q, true), 'SET_VRING_ENABLE');
      }

      const started = performance.now();
      let verify: LoadgenResult['verify'] = null;
      if (o.verify || o.verifyOnly) {
        if (!o.verifyOnly) await this.runPhase(Phase.VerifyWrite, Infinity);
        await this.runPhase(Phase.VerifyRead, Infinity);
        verify = { blocks: this.verified, mismatches: this.mismatches, firstMismatchOffset: this.firstMismatch };
      } else {
        await this.runPhase(Phase.Run, o.runtimeSec);
      }
      const seconds = (performance.now() - started) / 1000;
      for (let q = 0; q < o.queues; q++) await this.answer(fe.getVringBase(q), 'GET_VRING_BASE');

      const ios = this.reads + this.writes;
      const us = (ns: number) => Math.round(ns / 10) / 100;
      return {
        rw: o.rw,
        bs: o.bs,
        iodepth: o.iodepth,
        queues: o.queues,
        sizeBytes: this.blocks * o.bs,
        runtimeSec: Math.round(seconds * 1000) / 1000,
        ios,
        reads: this.reads,
        writes: this.writes,
        errors: this.errors,
        iops: Math.round(ios / seconds),
        mbps: Math.round((ios * o.bs) / seconds / 1e4) / 100,
        latencyUs: {
          p50: us(this.latency.quantile(0.5)),
          p99: us(this.latency.quantile(0.99)),
          mean: us(this.latency.count ? this.latency.sum / this.latency.count : 0),
          max: us(this.latency.max),
        },
        verify,
      };
    } finally {
      fe.close();
      if (mem) VhostUserFrontend.freeMemory(mem);
    }
  }
}

export function runLoadgen(opts: LoadgenOptions): Promise<LoadgenResult> {
  return new LoadGenerator(opts).run();
}
