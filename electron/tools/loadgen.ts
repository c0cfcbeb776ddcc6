// The load generator behind `spindle loadgen` and the benchmarks: plays a guest to any vhost-user-blk backend (Spindle's own export or
// qemu-storage-daemon): shared memfd RAM, split rings filled by DriverRing, kick/call eventfds,
// and reports IOPS, MB/s, latency percentiles and errors. `--verify` writes a seeded pattern
// over the region and reads it back.
//
// Hot path: every request slot (header, status byte, data buffer, ring head) is preallocated in
// guest memory and typed arrays; a completion batch is collected, refilled and published with
// one kick per queue; no objects are allocated per I/O.
//
// This file: the handshake, the guest memory layout, what each queue issues next, the phases and
// the result. A queue's slots: loadgen-queue.ts; options and result: loadgen-options.ts.
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
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
} from '../dataplane/virtio/virtio-blk.js';
import { VhostUserFrontend, type SharedGuestMemory } from './vhost-user-frontend.js';
import { F_PROTOCOL_FEATURES, ProtocolFeature, protocolBit } from '../dataplane/vhost-user/protocol.js';
import { isRandom, writes } from './workload.js';
import { LatencyHistogram } from './latency-histogram.js';
import { DEFAULT_TIMEOUT_SEC, type LoadgenOptions, type LoadgenResult } from './loadgen-options.js';
import { Phase, QueueDriver, type QueueOwner } from './loadgen-queue.js';

export { DEFAULT_TIMEOUT_SEC, MAX_IODEPTH, MAX_RING, type LoadgenOptions, type LoadgenResult } from './loadgen-options.js';

const bit = (n: number) => 1n << BigInt(n);

class LoadGenerator implements QueueOwner {
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
      const cpuStart = process.cpuUsage();
      let verify: LoadgenResult['verify'] = null;
      if (o.verify || o.verifyOnly) {
        if (!o.verifyOnly) await this.runPhase(Phase.VerifyWrite, Infinity);
        await this.runPhase(Phase.VerifyRead, Infinity);
        verify = { blocks: this.verified, mismatches: this.mismatches, firstMismatchOffset: this.firstMismatch };
      } else {
        await this.runPhase(Phase.Run, o.runtimeSec);
      }
      const seconds = (performance.now() - started) / 1000;
      const cpu = process.cpuUsage(cpuStart);
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
        driverCpuSec: Math.round((cpu.user + cpu.system) / 1000) / 1000,
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
