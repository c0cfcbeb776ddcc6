// The aio comparison: the 2009 native-AIO post's matrix on the user's own
// disk, through the full virtio-blk path. Per variant (threads, native, native+nowait, io_uring) an
// in-process DiskServer (its own IOThread) serves the target over vhost-user and `loadgen` plays the
// guest: sequential write then read at 16k, 64k, 256k records (iozone -I: O_DIRECT, one request in
// flight) and 20M transfers (dd bs=20M oflag/iflag=direct). Each run moves a bounded number of bytes
// and records throughput and the backend's CPU (IOThread + io_uring workers + thread-pool workers).
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DiskServer } from '../disks/disk-server.js';
import { runLoadgen } from '../../tools/loadgen.js';
import { fallocate, holes } from '../../dataplane/native/os.js';
import { SpindleError } from '../../shared/errors.js';
import { ENGINE_VARIANTS, modeConflict, variantName, type CacheMode } from '../../shared/modes.js';
import type { BenchRow, BenchVariant } from '../../shared/api.js';
import { profileLabel, type BenchProfile } from '../../shared/bench-profiles.js';
import { bucketUpperUs, type CountersSnapshot } from '../../dataplane/block/stats.js';
import { IoThreadCpu } from '../proc/thread-cpu.js';

export type Workload = BenchProfile;
export { GUEST_PROFILES as GUEST_WORKLOADS } from '../../shared/bench-profiles.js';

/** The post's columns: iozone at 16k, 64k, 256k records, then dd with 20M transfers; write before read. */
export const POST_WORKLOADS: readonly Workload[] = [16 << 10, 64 << 10, 256 << 10, 20 << 20].flatMap((recordBytes) =>
  (['write', 'read'] as const).map((op) => ({ op, recordBytes })),
);

export const DEFAULT_BYTES_PER_RUN = 64 << 20;
/** A run stops after this long even if its bytes are not all moved (a very slow disk). */
export const DEFAULT_MAX_SECONDS_PER_RUN = 20;

export interface CompareStep {
  index: number;
  total: number;
  variant: BenchVariant;
  workload: Workload;
  label: string;
}

export interface CompareOptions {
  path: string;
  variants?: readonly BenchVariant[];
  workloads?: readonly Workload[];
  cache?: CacheMode;
  bytesPerRun?: number;
  /** Requests in flight (default 1, as iozone and dd). */
  iodepth?: number;
  /** Punch the region's holes before every write run, so each variant writes to a fresh sparse file. */
  freshSparseWrites?: boolean;
  maxSecondsPerRun?: number;
  signal?: AbortSignal;
  onStep?: (step: CompareStep) => void;
  onRow?: (row: BenchRow, step: CompareStep) => void;
}

/** Bytes of the target one run of `recordBytes` covers: whole records, at least one, within the disk. */
export function regionBytes(recordBytes: number, bytesPerRun: number, diskBytes: number): number {
  const records = Math.min(Math.max(1, Math.floor(bytesPerRun / recordBytes)), Math.floor(diskBytes / recordBytes));
  return records * recordBytes;
}

export function cancelledError(): SpindleError {
  return new SpindleError('CANCELLED', 'The comparison was cancelled.');
}

function cpuNs(thread: IoThreadCpu | null, s: CountersSnapshot): number {
  // Thread-pool workers report their own CPU through the counters. The IOThread's whole CPU
  // (virtio-blk, vhost-user and the engine's submit/reap) and its io_uring workers' come from
  // /proc by the tid the thread reported; without it, the engine's share (loopNs) is what is left.
  const sec = thread?.seconds() ?? null;
  return s.cpu.poolNs + (sec !== null ? sec * 1e9 : s.cpu.loopNs);
}

/** Refuses combinations no disk server would run, before anything is written. */
export function checkVariants(variants: readonly BenchVariant[], cache: CacheMode): void {
  for (const v of variants) {
    const conflict = modeConflict(v.aio, cache);
    if (conflict) throw new SpindleError('UNSUPPORTED_MODE', `${conflict} Choose one of those caches or leave native out.`);
    if (v.nowait && v.aio !== 'native') {
      throw new SpindleError('INVALID_ARGUMENT', `nowait is a variant of aio 'native' only, not of '${v.aio}'.`);
    }
  }
}

/** Runs the matrix; resolves with one row per (variant, workload), in order. Rejects on cancel
 *  (after stopping the disk server) or when the target cannot be served. */
export async function runComparison(opts: CompareOptions): Promise<BenchRow[]> {
  const variants = opts.variants ?? ENGINE_VARIANTS;
  const workloads = opts.workloads ?? POST_WORKLOADS;
  const cache = opts.cache ?? 'none';
  const bytesPerRun = opts.bytesPerRun ?? DEFAULT_BYTES_PER_RUN;
  const iodepth = opts.iodepth ?? 1;
  const maxSeconds = opts.maxSecondsPerRun ?? DEFAULT_MAX_SECONDS_PER_RUN;
  checkVariants(variants, cache);
  const total = variants.length * workloads.length;
  const rows: BenchRow[] = [];
  const sockDir = mkdtempSync(join(tmpdir(), 'spindle-bench-'));
  try {
    for (const [vi, variant] of variants.entries()) {
      if (opts.signal?.aborted) throw cancelledError();
      const server = await DiskServer.start({
        path: opts.path,
        socketPath: join(sockDir, `v${vi}.sock`),
        aio: variant.aio,
        cache,
        nowait: variant.nowait ? 'on' : 'off',
        readOnly: false,
        queues: 1,
        serial: 'spindle-bench',
      });
      const threads = server.threadTid !== null ? new IoThreadCpu(server.threadTid) : null;
      try {
        for (const [wi, w] of workloads.entries()) {
          if (opts.signal?.aborted) throw cancelledError();
          const step: CompareStep = {
            index: vi * workloads.length + wi,
            total,
            variant,
            workload: w,
            label: `${variantName(variant)}: ${profileLabel(w)}`,
          };
          opts.onStep?.(step);
          const size = regionBytes(w.recordBytes, bytesPerRun, server.sizeBytes);
          if (size === 0)
            throw new SpindleError(
              'INVALID_ARGUMENT',
              `The disk (${server.sizeBytes} bytes) is smaller than one ${recordLabel(w.recordBytes)} record.`,
            );
          if (w.op !== 'read' && opts.freshSparseWrites) punchHoles(opts.path, size);
          const random = w.random === true || w.op === 'mixed';
          const s0 = server.stats();
          const c0 = cpuNs(threads, s0);
          const t0 = performance.now();
          const r = await runLoadgen({
            socket: join(sockDir, `v${vi}.sock`),
            rw: w.op === 'mixed' ? 'randrw' : random ? (w.op === 'read' ? 'randread' : 'randwrite') : w.op,
            bs: w.recordBytes,
            iodepth: w.iodepth ?? iodepth,
            queues: 1,
            runtimeSec: maxSeconds,
            size,
            verify: false,
            verifyOnly: false,
            rwmixread: w.readPercent ?? 70,
            seed: 1,
            passes: 1,
            ...(opts.signal ? { signal: opts.signal } : {}),
          });
          const seconds = (performance.now() - t0) / 1000;
          const s1 = server.stats();
          const cpuSec = Math.max(0, cpuNs(threads, s1) - c0) / 1e9;
          if (opts.signal?.aborted) throw cancelledError();
          if (server.failed) throw new SpindleError('IO_ERROR', `The disk server stopped during ${step.label}: ${server.failed}`);
          if (r.ios > 0 && r.errors === r.ios)
            throw new SpindleError('IO_ERROR', `Every request of ${step.label} failed: the disk reported I/O errors.`);
          const bytes = r.ios * w.recordBytes;
          const row: BenchRow = {
            mode: variant.aio,
            nowait: variant.nowait,
            op: w.op,
            recordBytes: w.recordBytes,
            mbps: round2(bytes / seconds / 1e6),
            kbps: Math.round(bytes / seconds / 1024),
            iops: Math.round(r.ios / seconds),
            cpuSec: round4(cpuSec),
            bytes,
            seconds: round4(seconds),
            errors: r.errors,
            nowaitFallbacks: s1.nowait.readFallbacks + s1.nowait.writeFallbacks - (s0.nowait.readFallbacks + s0.nowait.writeFallbacks),
            submitStallMaxUs: stallMaxUs(s0, s1),
            ...(random ? { random: true } : {}),
            ...(w.iodepth ? { iodepth: w.iodepth } : {}),
            ...(w.op === 'mixed' ? { readPercent: w.readPercent ?? 70 } : {}),
          };
          rows.push(row);
          opts.onRow?.(row, step);
        }
      } finally {
        await server.stop();
      }
    }
    return rows;
  } finally {
    rmSync(sockDir, { recursive: true, force: true });
  }
}

/** Makes [0, bytes) of a file sparse again (every variant then writes to unallocated blocks). */
function punchHoles(path: string, bytes: number): void {
  const fd = openSync(path, 'r+');
  try {
    fallocate(fd, 'punch-hole', 0, bytes);
  } finally {
    closeSync(fd);
  }
}

/** True for a regular file with holes (an image that is not fully allocated). */
export function isSparseFile(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    return holes(fd).holeBytes > 0;
  } catch {
    return false; // block devices and filesystems without SEEK_HOLE
  } finally {
    closeSync(fd);
  }
}

export function recordLabel(bytes: number): string {
  if (bytes % (1 << 20) === 0) return `${bytes >> 20}M`;
  if (bytes % 1024 === 0) return `${bytes >> 10}k`;
  return `${bytes}`;
}

/** The longest io_submit of this run, at histogram resolution (the counters keep only a lifetime maximum). */
function stallMaxUs(s0: CountersSnapshot, s1: CountersSnapshot): number {
  for (let b = s1.submit.histogram.length - 1; b >= 0; b--) {
    if (s1.submit.histogram[b]! > (s0.submit.histogram[b] ?? 0)) return Math.min(bucketUpperUs(b), Math.round(s1.submit.maxNs / 1000));
  }
  return 0;
}

const round2 = (x: number): number => Math.round(x * 100) / 100;
const round4 = (x: number): number => Math.round(x * 1e4) / 1e4;

/** The raw rows as CSV (one line per run; throughput in MB/s and KiB/s). */
export function rowsToCsv(rows: readonly BenchRow[]): string {
  const head = 'mode,op,record_bytes,mb_per_s,kib_per_s,iops,backend_cpu_s,bytes,seconds,nowait_fallbacks,submit_stall_max_us';
  const body = rows.map((r) =>
    [
      variantName({ aio: r.mode, nowait: r.nowait ?? false }),
      r.op,
      r.recordBytes,
      r.mbps,
      r.kbps ?? '',
      r.iops,
      r.cpuSec,
      r.bytes ?? '',
      r.seconds ?? '',
      r.nowaitFallbacks ?? '',
      r.submitStallMaxUs ?? '',
    ].join(','),
  );
  return [head, ...body].join('\n') + '\n';
}
