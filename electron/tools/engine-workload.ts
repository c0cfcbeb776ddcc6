// A closed-loop I/O generator over BlockBackend's batch API (for bench-engines and the engine
// benchmark): keeps `queueDepth` requests in flight, resubmitting each completion batch in one
// call, and reports IOPS, throughput, p99 latency (from the disk counters) and process CPU.
import { BlockBackend } from '../dataplane/block/backend.js';
import { percentileUs } from '../dataplane/block/stats.js';
import { BlockOp } from '../dataplane/block/types.js';
import { posix } from '../dataplane/native/posix.js';

export interface Workload {
  name: string;
  op: 'read' | 'write';
  pattern: 'random' | 'sequential';
  blockSize: number;
  queueDepth: number;
}

export const STANDARD_WORKLOADS: Workload[] = [
  { name: '4k-randread-qd32', op: 'read', pattern: 'random', blockSize: 4096, queueDepth: 32 },
  { name: '4k-randwrite-qd32', op: 'write', pattern: 'random', blockSize: 4096, queueDepth: 32 },
  { name: '1m-seqread-qd4', op: 'read', pattern: 'sequential', blockSize: 1 << 20, queueDepth: 4 },
  { name: '1m-seqwrite-qd4', op: 'write', pattern: 'sequential', blockSize: 1 << 20, queueDepth: 4 },
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

export async function runWorkload(b: BlockBackend, w: Workload, runtimeSeconds: number, span = b.sizeBytes): Promise<WorkloadResult> {
  const blocks = Math.floor(Math.min(span, b.sizeBytes) / w.blockSize);
  if (blocks < 1) throw new Error(`${b.path} is smaller than one ${w.blockSize}-byte block`);
  // Page-aligned shared memory, as guest RAM is: a V8 heap buffer is misaligned for O_DIRECT and
  // every request would be bounced through a copy, which is not what a guest's I/O costs.
  const memfd = posix.memfdCreate('spindle-workload', w.blockSize * w.queueDepth);
  const memory = posix.mapShared(memfd, 0, w.blockSize * w.queueDepth, true).fill(0x5a);
  const bufferId = 0x7fff_0000;
  b.registerBuffer(bufferId, memory);
  const op = w.op === 'read' ? BlockOp.Read : BlockOp.Write;
  let next = 0, seed = 0x9e3779b9, ios = 0, stopping = false, errors = 0;
  const offset = (): number => {
    if (w.pattern === 'sequential') return (next++ % blocks) * w.blockSize;
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return (seed % blocks) * w.blockSize;
  };
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
          b.begin(slot, op, offset());
          b.segment(bufferId, slot * w.blockSize, w.blockSize);
        }
        inFlight += count;
        b.submit();
      }
      if (inFlight === 0) resolve();
    };
    for (let slot = 0; slot < w.queueDepth; slot++) {
      b.begin(slot, op, offset());
      b.segment(bufferId, slot * w.blockSize, w.blockSize);
    }
    inFlight = w.queueDepth;
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
  const hist = after[w.op].latencyHistogram.map((v, i) => v - before[w.op].latencyHistogram[i]!);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const bytes = ios * w.blockSize;
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
