// The API's stats shapes: one sampler tick of every served disk and QEMU process. Pure;
// re-exported by api.ts.
import { z } from 'zod';
import { VmId } from './model.js';

// ───────────────────────────── stats ─────────────────────────────

export const DiskSample = z.object({
  /** null for a disk served outside a VM (scratch disk, benchmark). */
  vmId: VmId.nullable(),
  diskId: z.string(),
  readIops: z.number(),
  writeIops: z.number(),
  readMBps: z.number(),
  writeMBps: z.number(),
  /** Completion latency over the interval, microseconds (0 when idle). */
  latencyP50Us: z.number(),
  latencyP99Us: z.number(),
  /** Requests in flight at the sample instant. */
  queueDepth: z.number(),
  /** Backend CPU over the interval, in percent of one core, and cumulative seconds. */
  backendCpuPct: z.number(),
  backendCpuSec: z.number(),
  /** Requests that bounced under RWF_NOWAIT and went through the thread pool, per second (absent: not reported). */
  nowaitFallbacksPerSec: z.number().optional(),
  /** Longest time inside one io_submit/io_uring_submit over the interval, microseconds (absent: not reported). */
  submitStallMaxUs: z.number().optional(),
});
export type DiskSample = z.infer<typeof DiskSample>;

export const VmSample = z.object({
  vmId: VmId,
  /** QEMU's CPU (all its threads, /proc/PID/stat) in percent of one core, and cumulative seconds. */
  qemuCpuPct: z.number(),
  qemuCpuSec: z.number(),
});
export type VmSample = z.infer<typeof VmSample>;

/** One sampler tick (every 500 ms); 10 minutes are kept. */
export const StatsTick = z.object({ t: z.number(), intervalMs: z.number(), disks: z.array(DiskSample), vms: z.array(VmSample) });
export type StatsTick = z.infer<typeof StatsTick>;
