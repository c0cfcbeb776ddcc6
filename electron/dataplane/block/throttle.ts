// Per-disk I/O limits: a BlockDevice in front of another (the raw backend or a format driver)
// that delays requests to keep each configured rate, with QEMU's leaky-bucket semantics
// (QEMU docs/throttle.txt, util/throttle.c): a bucket leaks at its average rate; a request may go
// while the bucket holds no more than avg/10 (or max × max-length when a burst rate is set, and
// then also no more than max/10 in the burst bucket that leaks at the burst rate); going adds its
// bytes or operations. Reads and writes wait in their own FIFO queues, as QEMU's do. Nothing is
// dropped and nothing is reordered within a queue: discard and write-zeroes wait in the write
// queue, and a flush waits there too until every write released before it has completed.
// Without limits (and nothing queued) requests pass straight through.
import type { IoLimits, LimitBucket } from '../../shared/limits.js';
import { limitBuckets } from '../../shared/limits.js';
import type { BlockDevice } from './types.js';
import { BlockOp } from './types.js';

const READ = 0;
const WRITE = 1;

interface Held {
  tag: number;
  op: BlockOp;
  offset: number;
  length: number;
  flags: number;
  /** [bufferId, bufferOffset, length] triples. */
  segs: number[];
  bytes: number;
  released: boolean;
}

interface Bucket extends LimitBucket {
  level: number;
  burstLevel: number;
}

/** The wait in ms before one more unit may go through `b` (throttle_compute_wait). */
function bucketWait(b: Bucket): number {
  const size = b.max === undefined ? b.avg / 10 : b.max * b.maxLength;
  const extra = b.level - size;
  if (extra > 0) return (extra / b.avg) * 1000;
  if (b.maxLength > 1 && b.max !== undefined) {
    const burstExtra = b.burstLevel - b.max / 10;
    if (burstExtra > 0) return (burstExtra / b.max) * 1000;
  }
  return 0;
}

export interface ThrottleStats {
  /** Requests waiting for their turn right now. */
  queued: number;
  /** Requests that had to wait since the throttle was made. */
  delayed: number;
}

export class ThrottledDevice implements BlockDevice {
  onComplete: ((tags: Uint32Array, results: Int32Array, count: number) => void) | null = null;
  private buckets: Bucket[] = [];
  private iopsSize = 0;
  private lastLeak: number;
  private readonly queues: [Held[], Held[]] = [[], []];
  /** Requests begun since the last submit (held, not yet in a queue). */
  private staged: Held[] = [];
  private current: Held | null = null;
  /** The request begun last went straight to the inner device. */
  private passing = false;
  /** Tags of write-queue requests released and not completed: a flush waits for none. */
  private readonly writesOut = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  private timerDue = 0;
  private pumpQueued = false;
  private unlimited = false;
  private drainWaiters: (() => void)[] = [];
  private delayedCount = 0;

  constructor(
    readonly inner: BlockDevice,
    limits: IoLimits = {},
    private readonly now: () => number = () => performance.now(),
  ) {
    this.lastLeak = now();
    this.setLimits(limits);
    inner.onComplete = (tags, results, count) => this.completed(tags, results, count);
  }

  /** Applies new limits at once (buckets start empty, as QEMU's throttle_config does); requests
   *  already waiting are reconsidered under them. */
  setLimits(limits: IoLimits): void {
    this.buckets = limitBuckets(limits).map((b) => ({ ...b, level: 0, burstLevel: 0 }));
    this.iopsSize = limits.iopsSize ?? 0;
    this.lastLeak = this.now();
    this.schedulePump();
  }

  get limited(): boolean {
    return this.buckets.length > 0 && !this.unlimited;
  }

  get stats(): ThrottleStats {
    return { queued: this.queues[READ].length + this.queues[WRITE].length + this.staged.length, delayed: this.delayedCount };
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get logicalBlockSize(): number {
    return this.inner.logicalBlockSize;
  }
  get physicalBlockSize(): number {
    return this.inner.physicalBlockSize;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  get supportsDiscard(): boolean {
    return this.inner.supportsDiscard;
  }
  get supportsWriteZeroes(): boolean {
    return this.inner.supportsWriteZeroes;
  }
  get writeCache(): boolean {
    return this.inner.writeCache;
  }
  set writeCache(on: boolean) {
    this.inner.writeCache = on;
  }
  get inFlight(): number {
    return this.inner.inFlight + this.stats.queued;
  }

  /** Growing the disk is not I/O the guest asked for: it is never throttled. */
  resize(newSizeBytes: number): Promise<void> {
    return this.inner.resize(newSizeBytes);
  }

  registerBuffer(id: number, memory: Uint8Array): void {
    this.inner.registerBuffer(id, memory);
  }
  unregisterBuffer(id: number): void {
    this.inner.unregisterBuffer(id);
  }

  begin(tag: number, op: BlockOp, offsetBytes: number, lengthBytes = 0, flags = 0): void {
    this.passing = !this.limited && this.idle();
    if (this.passing) {
      this.current = null;
      this.inner.begin(tag, op, offsetBytes, lengthBytes, flags);
      return;
    }
    const bytes = op === BlockOp.WriteZeroes ? lengthBytes : 0;
    this.current = { tag, op, offset: offsetBytes, length: lengthBytes, flags, segs: [], bytes, released: false };
    this.staged.push(this.current);
  }

  segment(bufferId: number, bufferOffset: number, length: number): void {
    if (this.passing) return this.inner.segment(bufferId, bufferOffset, length);
    this.current!.segs.push(bufferId, bufferOffset, length);
    this.current!.bytes += length;
  }

  submit(): void {
    if (this.staged.length === 0) return this.inner.submit();
    const batch = this.staged;
    for (const h of batch) this.queues[h.op === BlockOp.Read ? READ : WRITE].push(h);
    this.staged = [];
    this.current = null;
    this.pump();
    for (const h of batch) if (!h.released) this.delayedCount++;
  }

  async drain(): Promise<void> {
    if (!this.idle()) await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    await this.inner.drain();
  }

  /** Releases what still waits without limits (the disk is going away), then closes the inner device. */
  async close(): Promise<void> {
    this.unlimited = true;
    this.pump();
    await this.drain();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inner.close();
  }

  private idle(): boolean {
    return this.staged.length === 0 && this.queues[READ].length === 0 && this.queues[WRITE].length === 0;
  }

  private leak(): void {
    const t = this.now();
    const dt = (t - this.lastLeak) / 1000;
    this.lastLeak = t;
    if (dt <= 0) return;
    for (const b of this.buckets) {
      b.level = Math.max(b.level - b.avg * dt, 0);
      if (b.maxLength > 1 && b.max !== undefined) b.burstLevel = Math.max(b.burstLevel - b.max * dt, 0);
    }
  }

  /** ms until direction `dir` may release one more request (throttle_compute_wait_for). */
  private waitFor(dir: number): number {
    let wait = 0;
    for (const b of this.buckets) if (b.scope === 'total' || (b.scope === 'read') === (dir === READ)) wait = Math.max(wait, bucketWait(b));
    return wait;
  }

  private account(dir: number, bytes: number): void {
    const units = this.iopsSize && bytes > this.iopsSize ? bytes / this.iopsSize : 1;
    for (const b of this.buckets) {
      if (b.scope !== 'total' && (b.scope === 'read') !== (dir === READ)) continue;
      const n = b.kind === 'bps' ? bytes : units;
      b.level += n;
      if (b.maxLength > 1) b.burstLevel += n;
    }
  }

  /** Releases every queue head the limits allow now, in order, and arms a timer for the rest. */
  private pump(): void {
    this.leak();
    let released = 0;
    let nextMs = Infinity;
    for (const dir of [READ, WRITE]) {
      const q = this.queues[dir]!;
      while (q.length > 0) {
        const h = q[0]!;
        if (h.op === BlockOp.Flush) {
          if (this.writesOut.size > 0) break; // a completion pumps again
        } else if (h.op !== BlockOp.Discard && this.limited) {
          const wait = this.waitFor(dir);
          if (wait > 0) {
            nextMs = Math.min(nextMs, wait);
            break;
          }
          this.account(dir, h.bytes);
        }
        q.shift();
        this.release(h, dir);
        released++;
      }
    }
    if (released > 0) this.inner.submit();
    // One timer for both queues, re-armed when a head must go sooner than it fires.
    const due = this.lastLeak + nextMs;
    if (nextMs < Infinity && (!this.timer || due < this.timerDue - 1)) {
      if (this.timer) clearTimeout(this.timer);
      this.timerDue = due;
      this.timer = setTimeout(
        () => {
          this.timer = null;
          this.pump();
        },
        Math.max(1, Math.ceil(nextMs)),
      );
    }
    if (this.idle()) for (const w of this.drainWaiters.splice(0)) w();
  }

  private release(h: Held, dir: number): void {
    h.released = true;
    this.inner.begin(h.tag, h.op, h.offset, h.length, h.flags);
    for (let i = 0; i < h.segs.length; i += 3) this.inner.segment(h.segs[i]!, h.segs[i + 1]!, h.segs[i + 2]!);
    if (dir === WRITE && h.op !== BlockOp.Flush) this.writesOut.add(h.tag);
  }

  private completed(tags: Uint32Array, results: Int32Array, count: number): void {
    let flushWaits = false;
    if (this.writesOut.size > 0) {
      for (let i = 0; i < count; i++) this.writesOut.delete(tags[i]!);
      flushWaits = this.writesOut.size === 0 && this.queues[WRITE][0]?.op === BlockOp.Flush;
    }
    this.onComplete?.(tags, results, count);
    if (flushWaits) this.schedulePump();
  }

  /** Pumps on the next turn of the loop: never from inside the engine's completion callback. */
  private schedulePump(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    setImmediate(() => {
      this.pumpQueued = false;
      this.pump();
    });
  }
}
