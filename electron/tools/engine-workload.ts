// A closed-loop I/O generator over BlockBackend's batch API (for bench-engines and the engine
// benchmark), playing the same Workload as loadgen.ts: keeps `iodepth` requests in flight, resubmitting each completion batch in one
// call, and reports IOPS, throughput, p99 latency (from the disk counters) and process CPU.
import { BlockBackend } from '../dataplane/block/backend.js';
import { percentileUs } from '../dataplane/block/stats.js';
import { BlockOp } from '../dataplane/block/types.js';
import { posix } from '../dataplane/native/posix.js';
import { isRandom, type Workload } from './workload.js';

/** A workload with the name its results are reported under. */
export interface NamedWorkload extends Workload {
  name: string;
}

export const STANDARD_WORKLOADS: NamedWorkload[] = [
  { name: '4k-randread-qd32', rw: 'randread', bs: 4096, iodepth: 32 },
  { name: '4k-randwrite-qd32', rw: 'randwrite', bs: 4096, iodepth: 32 },
  { name: '1m-seqread-qd4', rw: 'read', bs: 1 << 20, iodepth: 4 },
  { name: '1m-seqwrite-qd4', rw: 'write', bs: 1 << 20, iodepth: 4 },
];

export interface WorkloadResult {
  workload: string;
  ios: number;
  seconds: number;
  iops: number;
  mbPerSec: number;
  p99Us: number;
  /** Whole-process CPU (user + system) during the run. */
  cpuSeconds: number;
  /** CPU per GiB moved. */
  cpuSecondsPerGiB: number;
  nowaitFallbacks: number;
  submitStallMaxUs: number;
}

export async function runWorkload(b: BlockBackend, w: NamedWorkload, runtimeSeconds: number, span = b.sizeBytes): Promise<WorkloadResult> {
  const blocks = Math.floor(Math.min(span, b.sizeBytes) / w.bs);
  if (blocks < 1) throw new Error(`${b.path} is smaller than one ${w.bs}-byte block`);
  // Page-aligned shared memory, as guest RAM is: a V8 heap buffer is misaligned for O_DIRECT and
  // every request would be bounced through a copy, which is not what a guest's I/O costs.
  const memfd = posix.memfdCreate('spindle-workload', w.bs * w.iodepth);
  const memory = posix.mapShared(memfd, 0, w.bs * w.iodepth, true).fill(0x5a);
  const bufferId = 0x7fff_0000;
  b.registerBuffer(bufferId, memory);
  const random = isRandom(w.rw);
  const readPercent = w.rw === 'randrw' ? (w.rwmixread ?? 50) : w.rw === 'randread' || w.rw === 'read' ? 100 : 0;
  let next = 0,
    seed = 0x9e3779b9,
    ios = 0,
    stopping = false,
    errors = 0;
  const xorshift = (): number => {
    seed ^= seed << 13;
    seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    return seed;
  };
  const offset = (): number => (random ? (xorshift() % blocks) * w.bs : (next++ % blocks) * w.bs);
  // Only a mix draws a number per request, so pure workloads keep their offset sequence.
  const op = (): BlockOp =>
    readPercent === 100 ? BlockOp.Read : readPercent === 0 ? BlockOp.Write : xorshift() % 100 < readPercent ? BlockOp.Read : BlockOp.Write;
  const before = b.counters.snapshot();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + runtimeSeconds * 1000;
  const previous = b.onComplete;
  await new Promise<void>((resolve) => {
    let inFlight = 0;
    b.onComplete = (tags, results, count) => {
      inFlight -= count;
      ios += count;
      for (let i = 0; i < count; i++) if (results[i]! < 0) errors++;
      if (!stopping && performance.now() >= deadline) stopping = true;
      if (!stopping) {
        for (let i = 0; i < count; i++) {
          const slot = tags[i]!;
          b.begin(slot, op(), offset());
          b.segment(bufferId, slot * w.bs, w.bs);
        }
        inFlight += count;
        b.submit();
      }
      if (inFlight === 0) resolve();
    };
    for (let slot = 0; slot < w.iodepth; slot++) {
      b.begin(slot, op(), offset());
      b.segment(bufferId, slot * w.bs, w.bs);
    }
    inFlight = w.iodepth;
    b.submit();
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  b.onComplete = previous;
  b.unregisterBuffer(bufferId);
  posix.unmap(memory);
  posix.closeFd(memfd);
  if (errors) throw new Error(`${w.name}: ${errors} requests failed on ${b.path}`);
  const after = b.counters.snapshot();
  // Both directions' growth: a pure workload grows one of them, a mix both.
  const hist = after.read.latencyHistogram.map(
    (v, i) => v - before.read.latencyHistogram[i]! + after.write.latencyHistogram[i]! - before.write.latencyHistogram[i]!,
  );
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const bytes = ios * w.bs;
  return {
    workload: w.name,
    ios,
    seconds,
    iops: ios / seconds,
    mbPerSec: bytes / seconds / 1e6,
    p99Us: percentileUs(hist, 0.99),
    cpuSeconds,
    cpuSecondsPerGiB: bytes ? cpuSeconds / (bytes / 2 ** 30) : 0,
    nowaitFallbacks: after.nowait.readFallbacks + after.nowait.writeFallbacks - before.nowait.readFallbacks - before.nowait.writeFallbacks,
    submitStallMaxUs: after.submit.maxNs / 1000,
  };
}
