// The API's aio comparison shapes: what to measure (target, variants, workloads), its rows,
// results and progress. Pure; re-exported by api.ts.
import { z } from 'zod';
import { AbsolutePath, AioMode, CacheMode, DiskId, VmId } from './model.js';

// ───────────────────────────── benchmarks (aio comparison) ─────────────────────────────

export const BenchWorkload = z.strictObject({
  /** 'mixed': random reads and writes in one run (readPercent of them reads). */
  op: z.enum(['read', 'write', 'mixed']),
  /** Record size in bytes (16k, 64k, 256k, or 20M sequential transfers). */
  recordBytes: z
    .int()
    .min(512)
    .max(64 << 20),
  /** Random offsets instead of sequential ones (a guest-like profile); 'mixed' is always random. */
  random: z.boolean().optional(),
  /** Requests in flight for this workload (default: the run's iodepth). */
  iodepth: z.int().min(1).max(64).optional(),
  /** For 'mixed': the share of reads, percent (default 70). */
  readPercent: z.int().min(1).max(99).optional(),
});
export const BenchTarget = z.discriminatedUnion('kind', [
  /** The scratch image in the data directory. */
  z.strictObject({ kind: z.literal('scratch') }),
  z.strictObject({ kind: z.literal('path'), path: AbsolutePath }),
  /** A disk of a stopped VM (refused while the VM runs). */
  z.strictObject({ kind: z.literal('vmDisk'), vmId: VmId, diskId: DiskId }),
]);
/** One row of the comparison: an aio mode, and for `native` whether requests go with RWF_NOWAIT
 *  (a bounced one is re-issued through the thread pool). */
export const BenchVariant = z.strictObject({ aio: AioMode, nowait: z.boolean().default(false) });
export type BenchVariant = z.infer<typeof BenchVariant>;
export const BenchStartInput = z.strictObject({
  target: BenchTarget,
  /** Plain modes (no nowait); ignored when `variants` is given. */
  modes: z.array(AioMode).min(1).default(['threads', 'native', 'io_uring']),
  /** The rows to measure; default: threads, native, native+nowait, io_uring. */
  variants: z.array(BenchVariant).min(1).max(8).optional(),
  cache: CacheMode.default('none'),
  workloads: z.array(BenchWorkload).min(1).optional(),
  /** Bytes moved per (mode, workload) run (default 64 MiB; at least one record). */
  bytesPerRun: z
    .int()
    .min(1 << 20)
    .max(64 * 2 ** 30)
    .optional(),
  /** Requests in flight per run (default 1: iozone and dd keep one request in flight). */
  iodepth: z.int().min(1).max(64).optional(),
  /** How many times the whole table is measured (default 1): the spread of the repeats shows how steady each cell is. */
  repeats: z.int().min(1).max(5).optional(),
});
export const BenchRow = z.object({
  mode: AioMode,
  op: z.enum(['read', 'write', 'mixed']),
  recordBytes: z.number(),
  mbps: z.number(),
  iops: z.number(),
  /** Backend CPU seconds spent on this run. */
  cpuSec: z.number(),
  /** native with RWF_NOWAIT (its own row in the table). */
  nowait: z.boolean().optional(),
  /** KiB/s (1024 bytes), iozone's unit for the record-size columns. */
  kbps: z.number().optional(),
  bytes: z.number().optional(),
  seconds: z.number().optional(),
  /** Requests that bounced under nowait and went through the thread pool. */
  nowaitFallbacks: z.number().optional(),
  /** Longest single io_submit during the run, microseconds. */
  submitStallMaxUs: z.number().optional(),
  errors: z.number().optional(),
  /** Which repeat of the table this row belongs to (0-based; absent: 0). */
  repeat: z.number().optional(),
  /** A guest-like profile (random offsets): not one of the 2009 post's sequential columns. */
  random: z.boolean().optional(),
  /** Requests in flight in this run, when the workload set its own. */
  iodepth: z.number().optional(),
  /** For 'mixed': the share of reads, percent. */
  readPercent: z.number().optional(),
});
export type BenchRow = z.infer<typeof BenchRow>;
export const BenchState = z.enum(['running', 'done', 'cancelled', 'failed']);
export const BenchResult = z.object({
  benchId: z.string(),
  state: BenchState,
  rows: z.array(BenchRow),
  error: z.string().optional(),
  /** How it was measured, for the UI to state (cache, O_DIRECT, requests in flight, bytes per run, target). */
  settings: z
    .object({
      path: z.string(),
      cache: CacheMode,
      directIo: z.boolean(),
      iodepth: z.number(),
      bytesPerRun: z.number(),
      /** The target's region was made sparse again (holes punched) before every write run, so every variant writes to a fresh sparse file. */
      freshSparseWrites: z.boolean(),
      /** The region was saved before and written back after (a VM's disk). */
      preserved: z.boolean(),
    })
    .optional(),
  /** What was measured and when, for the table and the CSV. */
  info: z
    .object({
      /** The file or device measured. */
      disk: z.string(),
      /** The VM disk it is, when it is one. */
      vmId: z.string().optional(),
      diskId: z.string().optional(),
      /** Its size in bytes when the run started. */
      sizeBytes: z.number(),
      /** When the run started (ISO date). */
      startedAt: z.string(),
      /** The host kernel (uname -r). */
      kernel: z.string(),
    })
    .optional(),
});
export type BenchResult = z.infer<typeof BenchResult>;
export const BenchProgress = z.object({
  benchId: z.string(),
  state: BenchState,
  done: z.number(),
  total: z.number(),
  current: z
    .object({ mode: AioMode, op: z.enum(['read', 'write', 'mixed']), recordBytes: z.number(), nowait: z.boolean().optional() })
    .optional(),
  /** done / total, including the run in progress' share (0..1). */
  fraction: z.number().optional(),
  /** The step in words ("native+nowait: write 64k"). */
  step: z.string().optional(),
  error: z.string().optional(),
  /** The row just finished, if any. */
  row: BenchRow.optional(),
});
