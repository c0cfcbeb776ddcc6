// Typed view of native/engine: one engine class for the three aio modes, fed by a reusable
// submission queue (one native call per batch) and answering with one callback per completion
// batch through preallocated arrays (no per-request JS objects).
import { addon } from '../native/addon.js';
import type { AioMode } from '../../shared/modes.js';
import type { BlockOp } from './types.js';

/**
 * The submission layout, in float64 words (offsets fit exactly up to 2^53):
 *   request: tag, op, offsetBytes, lengthBytes, flags, segmentCount, then per segment
 *            bufferId, bufferOffset, length.
 * Read/Write take their length from their segments; Discard/WriteZeroes from lengthBytes.
 */
export const REQUEST_WORDS = 6;
export const SEGMENT_WORDS = 3;

/**
 * Request flag (beside block/types.ts's WRITE_ZEROES_MAY_UNMAP): this write or write-zeroes is
 * durable before it completes. The engine holds its completion until an fdatasync started after it
 * finishes, one such flush at a time for every write waiting (QEMU emulates FUA the same way);
 * a failing flush fails those writes with its errno. Ignored on O_DSYNC fds and with flushNoop.
 * Must match native/engine/request.h kFua.
 */
export const REQUEST_FLAG_FUA = 1 << 16;

/** A batch being built. Grows when needed, is reused after every submit. */
export class SubmissionQueue {
  words: Float64Array;
  /** Words used. */
  length = 0;
  /** Requests in the batch. */
  count = 0;
  private lastHeader = -1;

  constructor(initialWords = 16384) {
    this.words = new Float64Array(initialWords);
  }

  begin(tag: number, op: BlockOp, offsetBytes: number, lengthBytes = 0, flags = 0): void {
    this.reserve(REQUEST_WORDS);
    const w = this.words;
    const p = this.length;
    w[p] = tag;
    w[p + 1] = op;
    w[p + 2] = offsetBytes;
    w[p + 3] = lengthBytes;
    w[p + 4] = flags;
    w[p + 5] = 0;
    this.lastHeader = p;
    this.length = p + REQUEST_WORDS;
    this.count++;
  }

  segment(bufferId: number, bufferOffset: number, length: number): void {
    if (this.lastHeader < 0) throw new Error('segment() without begin()');
    this.reserve(SEGMENT_WORDS);
    const w = this.words;
    const p = this.length;
    w[p] = bufferId;
    w[p + 1] = bufferOffset;
    w[p + 2] = length;
    w[this.lastHeader + 5]! += 1;
    this.length = p + SEGMENT_WORDS;
  }

  reset(): void {
    this.length = 0;
    this.count = 0;
    this.lastHeader = -1;
  }

  private reserve(n: number): void {
    if (this.length + n <= this.words.length) return;
    const bigger = new Float64Array(Math.max(this.words.length * 2, this.length + n));
    bigger.set(this.words.subarray(0, this.length));
    this.words = bigger;
  }
}

export interface EngineOptions {
  kind: AioMode;
  fd: number;
  isBlock: boolean;
  /** O_DIRECT alignment (logical block size). */
  alignment: number;
  /** Requests in the kernel at once (native, io_uring). */
  queueDepth?: number;
  /** Thread pool bound (default 64, like QEMU). */
  maxWorkers?: number;
  /** Idle pool workers exit after this long. */
  idleMs?: number;
  /** Writes, discards and write-zeroes complete with -EROFS. */
  readOnly?: boolean;
  /** FLUSH completes at once (cache 'unsafe'). */
  flushNoop?: boolean;
  nowaitRead?: boolean;
  nowaitWrite?: boolean;
  /** The page-cache fast path of the threads engine on an fd without O_DIRECT (default on): each
   *  read and write is tried on the calling thread with RWF_NOWAIT first, only what would block
   *  goes to the pool (counted as hits and punts in the counters). */
  fastPath?: boolean;
  /** native on an image file: allocation-aware (native/engine/extent_map.h). Writes into allocated
   *  ranges go to Linux AIO with RWF_NOWAIT, writes into holes to the pool, which allocates
   *  `allocChunk` bytes (default 1 MiB) around them first. */
  extentMap?: boolean;
  allocChunk?: number;
  /** io_uring: where the setup-flag fallback starts ('defer': single-issuer + defer-taskrun;
   *  'coop': coop-taskrun, the default, see native/engine/uring_setup.h; 'plain'). A flag the
   *  kernel refuses falls back to the next. */
  uringSetup?: 'defer' | 'coop' | 'plain';
  /** io_uring: pin registered buffers of 1 MiB and more (guest RAM regions) as fixed buffers, so
   *  single-segment requests skip pinning their pages per I/O. Off by default: it pins (and so
   *  allocates) the whole guest RAM up front and counts against RLIMIT_MEMLOCK; refused, the
   *  buffers stay unpinned. */
  fixedBuffers?: boolean;
  /** DiskCounters.slots: the engine adds into it. */
  counters?: Float64Array;
  /** Most completions delivered per callback. */
  completionCapacity?: number;
  onComplete: (tags: Uint32Array, results: Int32Array, count: number) => void;
}

interface NativeEngine {
  submit(words: Float64Array, count: number): void;
  /** Native takes the view's data pointer (byteOffset included) and byteLength. */
  registerBuffer(id: number, memory: Uint8Array): void;
  unregisterBuffer(id: number): void;
  setNowait(read: boolean, write: boolean): boolean;
  destroy(): void;
  readonly inFlight: number;
  readonly kind: AioMode;
  readonly bounceStats: BounceStats;
  readonly features: string;
}

/** Bounce buffers (O_DIRECT with misaligned memory): allocated vs taken from the engine's pool. */
export interface BounceStats {
  allocations: number;
  reuses: number;
}

/**
 * One I/O engine bound to one fd. Throws Node-style system errors (code, errno) when the kernel
 * refuses to create it (e.g. EINVAL: 'native' on an fd without O_DIRECT).
 */
export class AioEngine {
  readonly kind: AioMode;
  private readonly native: NativeEngine;
  private readonly tags: Uint32Array;
  private readonly results: Int32Array;
  private drainWaiters: Array<() => void> = [];
  private closed = false;

  constructor(private readonly options: EngineOptions) {
    const cap = options.completionCapacity ?? 4096;
    this.tags = new Uint32Array(cap);
    this.results = new Int32Array(cap);
    this.kind = options.kind;
    const { onComplete, completionCapacity: _c, ...rest } = options;
    this.native = new addon.Engine({
      ...rest,
      tags: this.tags,
      results: this.results,
      onComplete: (count: number) => this.completed(count),
    }) as NativeEngine;
  }

  get inFlight(): number {
    return this.closed ? 0 : this.native.inFlight;
  }

  get bounceStats(): BounceStats {
    return this.native.bounceStats;
  }

  /** What the kernel interface was set up with, '+'-joined: io_uring's setup flags
   *  ('single-issuer+defer-taskrun', 'coop-taskrun', 'plain'), 'fixed-file', 'extent-map'. */
  get features(): string {
    return this.closed ? '' : this.native.features;
  }

  /** Segment offsets of buffer `id` count from memory[0] (wherever it sits in its ArrayBuffer). */
  registerBuffer(id: number, memory: Uint8Array): void {
    this.native.registerBuffer(id, memory);
  }

  unregisterBuffer(id: number): void {
    if (!this.closed) this.native.unregisterBuffer(id);
  }

  /** Switches RWF_NOWAIT per direction; false when this engine has no nowait (threads). */
  setNowait(read: boolean, write: boolean): boolean {
    return this.native.setNowait(read, write);
  }

  /** Hands the whole batch to the kernel/pool in one native call and resets the queue. */
  submit(queue: SubmissionQueue): void {
    if (this.closed) throw new Error('engine is closed');
    if (queue.count === 0) return;
    try {
      this.native.submit(queue.words, queue.count);
    } finally {
      queue.reset();
    }
  }

  drain(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Waits for in-flight I/O, then releases the kernel context, the pool and the eventfd. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.drain();
    this.closed = true;
    this.native.destroy();
  }

  private completed(count: number): void {
    try {
      this.options.onComplete(this.tags, this.results, count);
    } finally {
      // A throwing callback must not leave drain()/close() waiting forever.
      if (this.drainWaiters.length && this.native.inFlight === 0) {
        const waiters = this.drainWaiters;
        this.drainWaiters = [];
        for (const w of waiters) w();
      }
    }
  }
}

export const ENGINE_COUNTER_SLOTS: number = addon.engineCountersLayout.slots;
