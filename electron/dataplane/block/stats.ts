// Per-disk I/O counters: the engine (native) writes them straight into a SharedArrayBuffer, so
// any thread (the stats sampler on the main thread, the UI, `spindle export`) reads a disk served
// by another thread without a message per I/O. This module is the only place that knows the
// layout; tests/native/counters-layout.test.ts checks it against native/engine/counters.h.

export const COUNTERS_VERSION = 3;
export const DIRECTIONS = ['read', 'write', 'flush', 'discard', 'writeZeroes'] as const;
export type Direction = (typeof DIRECTIONS)[number];
/** Log2 microsecond buckets: bucket b counts values in [2^(b-1), 2^b) µs; bucket 0 is < 1 µs. */
export const BUCKETS = 32;

/** Slot of each counter (the first slot of a range); native/engine/counters.h kFields by the same names. */
export const SLOT = {
  version: 0,
  dirBase: 1, // + dir * 3 + {0 ops, 1 bytes, 2 errors}
  inFlight: 16,
  nowaitReadSubmitted: 17,
  nowaitReadFallbacks: 18,
  nowaitWriteSubmitted: 19,
  nowaitWriteFallbacks: 20,
  submitCalls: 21,
  submitTotalNs: 22,
  submitMaxNs: 23,
  cpuPoolNs: 24,
  cpuLoopNs: 25,
  inlineReadHits: 26,
  inlineReadPunts: 27,
  inlineWriteHits: 28,
  inlineWritePunts: 29,
  allocPoolWrites: 30,
  allocMisses: 31,
  latencyHist: 32, // + dir * BUCKETS + bucket
  submitHist: 32 + DIRECTIONS.length * BUCKETS,
  formatBase: 32 + (DIRECTIONS.length + 1) * BUCKETS, // 8 slots, FORMAT_SLOT
} as const;
export const COUNTER_SLOTS = SLOT.formatBase + 8; // 232

/** Counters of the format layer (dataplane/format/), in the slots native/engine/counters.h keeps
 *  for it (`format`): written by the qcow2 driver on the disk's thread, never by the engine. */
export const FORMAT_SLOT = {
  /** Guest writes that allocated at least one cluster (copy-on-write included). */
  allocatingWrites: SLOT.formatBase,
  /** Guest writes that went straight to allocated clusters. */
  inPlaceWrites: SLOT.formatBase + 1,
  /** Allocations that waited for the image file to grow. */
  allocationStalls: SLOT.formatBase + 2,
  l2Hits: SLOT.formatBase + 3,
  l2Misses: SLOT.formatBase + 4,
} as const;

export interface DirectionStats {
  ops: number;
  bytes: number;
  errors: number;
  /** Completion latency histogram (log2 µs buckets, see BUCKETS). */
  latencyHistogram: number[];
}

export interface CountersSnapshot {
  /** performance.timeOrigin + performance.now() when taken, in ms. */
  atMs: number;
  read: DirectionStats;
  write: DirectionStats;
  flush: DirectionStats;
  discard: DirectionStats;
  writeZeroes: DirectionStats;
  inFlight: number;
  nowait: { readSubmitted: number; readFallbacks: number; writeSubmitted: number; writeFallbacks: number };
  /** Time inside io_submit / io_uring_submit per call ("submission stalls"). */
  submit: { calls: number; totalNs: number; maxNs: number; histogram: number[] };
  /** CPU time of the pool workers; time the owning thread spends inside the engine (it does not sleep there). */
  cpu: { poolNs: number; loopNs: number };
  /** The page-cache fast path (threads engine on writeback, writethrough, unsafe): reads and writes
   *  done inline on the IOThread with RWF_NOWAIT (hits), and those that would have blocked and went
   *  to the thread pool (punts). */
  fastPath: { readHits: number; readPunts: number; writeHits: number; writePunts: number };
  /** Allocation-aware native (nowait 'auto' on an image file): writes into holes done by the pool,
   *  which allocates ahead; writes the extent map called allocated that bounced (EAGAIN: the file
   *  was changed behind Spindle's back, or on ext4 another write held the inode lock converting
   *  unwritten extents), redone by the pool. */
  allocation: { poolWrites: number; misses: number };
  /** The format layer's counters (all 0 for raw). */
  format: { allocatingWrites: number; inPlaceWrites: number; allocationStalls: number; l2Hits: number; l2Misses: number };
}

/** Upper bound of a bucket in µs (bucket 0: < 1 µs). */
export const bucketUpperUs = (b: number): number => 2 ** b;

/** The value (µs) below which fraction `q` of the histogram's samples fall, at bucket resolution. */
export function percentileUs(histogram: readonly number[], q: number): number {
  const total = histogram.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let b = 0; b < histogram.length; b++) {
    seen += histogram[b]!;
    if (seen >= rank) return bucketUpperUs(b);
  }
  return bucketUpperUs(histogram.length - 1);
}

const subHist = (a: readonly number[], b: readonly number[]): number[] => a.map((v, i) => v - (b[i] ?? 0));

export interface Rates {
  seconds: number;
  readIops: number;
  writeIops: number;
  readBytesPerSec: number;
  writeBytesPerSec: number;
  flushPerSec: number;
  errorsPerSec: number;
  nowaitFallbacksPerSec: number;
  /** Percentiles of requests completed between the two snapshots (µs, bucket resolution). */
  readP50Us: number;
  readP99Us: number;
  writeP50Us: number;
  writeP99Us: number;
  /** Engine CPU seconds per wall second. */
  cpuLoad: number;
}

/** Rates between two snapshots of the same counters (`prev` taken first). */
export function rates(prev: CountersSnapshot, cur: CountersSnapshot): Rates {
  const s = Math.max((cur.atMs - prev.atMs) / 1000, 1e-9);
  const d = (f: (x: CountersSnapshot) => number): number => (f(cur) - f(prev)) / s;
  const errors = (x: CountersSnapshot): number => DIRECTIONS.reduce((a, k) => a + x[k].errors, 0);
  const rh = subHist(cur.read.latencyHistogram, prev.read.latencyHistogram);
  const wh = subHist(cur.write.latencyHistogram, prev.write.latencyHistogram);
  return {
    seconds: s,
    readIops: d((x) => x.read.ops),
    writeIops: d((x) => x.write.ops),
    readBytesPerSec: d((x) => x.read.bytes),
    writeBytesPerSec: d((x) => x.write.bytes),
    flushPerSec: d((x) => x.flush.ops),
    errorsPerSec: d(errors),
    nowaitFallbacksPerSec: d((x) => x.nowait.readFallbacks + x.nowait.writeFallbacks),
    readP50Us: percentileUs(rh, 0.5),
    readP99Us: percentileUs(rh, 0.99),
    writeP50Us: percentileUs(wh, 0.5),
    writeP99Us: percentileUs(wh, 0.99),
    cpuLoad: d((x) => (x.cpu.poolNs + x.cpu.loopNs) / 1e9),
  };
}

/** The counters of one disk, over a SharedArrayBuffer that can be posted to other threads. */
export class DiskCounters {
  readonly buffer: SharedArrayBuffer;
  /** The view native writes through (pass to the engine). */
  readonly slots: Float64Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(COUNTER_SLOTS * 8);
    if (this.buffer.byteLength < COUNTER_SLOTS * 8) throw new RangeError(`DiskCounters: buffer needs ${COUNTER_SLOTS * 8} bytes`);
    this.slots = new Float64Array(this.buffer, 0, COUNTER_SLOTS);
    this.slots[SLOT.version] = COUNTERS_VERSION;
  }

  get inFlight(): number {
    return this.slots[SLOT.inFlight]!;
  }

  snapshot(): CountersSnapshot {
    const v = this.slots;
    const dir = (i: number): DirectionStats => ({
      ops: v[SLOT.dirBase + i * 3]!,
      bytes: v[SLOT.dirBase + i * 3 + 1]!,
      errors: v[SLOT.dirBase + i * 3 + 2]!,
      latencyHistogram: Array.from(v.subarray(SLOT.latencyHist + i * BUCKETS, SLOT.latencyHist + (i + 1) * BUCKETS)),
    });
    return {
      atMs: performance.timeOrigin + performance.now(),
      read: dir(0),
      write: dir(1),
      flush: dir(2),
      discard: dir(3),
      writeZeroes: dir(4),
      inFlight: v[SLOT.inFlight]!,
      nowait: {
        readSubmitted: v[SLOT.nowaitReadSubmitted]!,
        readFallbacks: v[SLOT.nowaitReadFallbacks]!,
        writeSubmitted: v[SLOT.nowaitWriteSubmitted]!,
        writeFallbacks: v[SLOT.nowaitWriteFallbacks]!,
      },
      submit: {
        calls: v[SLOT.submitCalls]!,
        totalNs: v[SLOT.submitTotalNs]!,
        maxNs: v[SLOT.submitMaxNs]!,
        histogram: Array.from(v.subarray(SLOT.submitHist, SLOT.submitHist + BUCKETS)),
      },
      cpu: { poolNs: v[SLOT.cpuPoolNs]!, loopNs: v[SLOT.cpuLoopNs]! },
      fastPath: {
        readHits: v[SLOT.inlineReadHits]!,
        readPunts: v[SLOT.inlineReadPunts]!,
        writeHits: v[SLOT.inlineWriteHits]!,
        writePunts: v[SLOT.inlineWritePunts]!,
      },
      allocation: { poolWrites: v[SLOT.allocPoolWrites]!, misses: v[SLOT.allocMisses]! },
      format: {
        allocatingWrites: v[FORMAT_SLOT.allocatingWrites]!,
        inPlaceWrites: v[FORMAT_SLOT.inPlaceWrites]!,
        allocationStalls: v[FORMAT_SLOT.allocationStalls]!,
        l2Hits: v[FORMAT_SLOT.l2Hits]!,
        l2Misses: v[FORMAT_SLOT.l2Misses]!,
      },
    };
  }

  /** Compact JSON-able summary (for `spindle export`'s exit line `stats {json}`). */
  summary(): Record<string, unknown> {
    const s = this.snapshot();
    const dir = (d: DirectionStats) => ({
      ops: d.ops,
      bytes: d.bytes,
      errors: d.errors,
      p50Us: percentileUs(d.latencyHistogram, 0.5),
      p99Us: percentileUs(d.latencyHistogram, 0.99),
    });
    return {
      read: dir(s.read),
      write: dir(s.write),
      flush: dir(s.flush),
      discard: dir(s.discard),
      writeZeroes: dir(s.writeZeroes),
      errors: DIRECTIONS.reduce((a, k) => a + s[k].errors, 0),
      inFlight: s.inFlight,
      submitStallMaxUs: s.submit.maxNs / 1000,
      submitStallP99Us: percentileUs(s.submit.histogram, 0.99),
      submitCalls: s.submit.calls,
      /** io_submit / io_uring_enter durations, log2 µs buckets (bucketUpperUs), trailing zeros cut. */
      submitHistogram: s.submit.histogram.slice(0, s.submit.histogram.findLastIndex((n) => n > 0) + 1),
      nowait: s.nowait,
      fastPath: s.fastPath,
      allocation: s.allocation,
      cpuSeconds: (s.cpu.poolNs + s.cpu.loopNs) / 1e9,
      ...(s.format.allocatingWrites || s.format.inPlaceWrites || s.format.l2Hits || s.format.l2Misses
        ? {
            format: {
              ...s.format,
              l2HitRate: s.format.l2Hits + s.format.l2Misses ? s.format.l2Hits / (s.format.l2Hits + s.format.l2Misses) : null,
            },
          }
        : {}),
    };
  }
}
