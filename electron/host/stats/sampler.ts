// Samples every running disk's counters and every QEMU's CPU every 500 ms, turns cumulative
// counters into rates, keeps 10 minutes of ticks in a ring, and emits each tick ('tick').
import { EventEmitter } from 'node:events';
import type { DiskSample, StatsTick, VmSample } from '../../shared/api.js';
import type { DiskCountersSnapshot, DiskHost } from '../vm/disk-host.js';
import { bucketUpperUs, percentileUs } from '../../dataplane/block/stats.js';
import { processCpuSeconds } from '../proc/thread-cpu.js';

export const SAMPLE_INTERVAL_MS = 500;
export const HISTORY_MS = 10 * 60 * 1000;

export interface SampleSource {
  diskHosts(): Iterable<{ vmId: string | null; diskId: string; host: DiskHost }>;
  qemuProcesses(): Iterable<{ vmId: string; pid: number }>;
}

interface Prev {
  host: DiskHost;
  t: number;
  c: DiskCountersSnapshot;
}

/** Bucket-wise growth of a cumulative log2 histogram between two samples. */
function histogramGrowth(prev: ArrayLike<number> | undefined, now: ArrayLike<number>): number[] {
  return Array.from(now, (v, i) => Math.max(0, v - (prev?.[i] ?? 0)));
}

/**
 * The latency (µs) below which `q` of the interval's completions fall, at bucket resolution:
 * the upper bound 2^b of the bucket holding that rank (bucket b counts [2^(b-1), 2^b) µs).
 */
export function percentileFromLog2(prev: ArrayLike<number> | undefined, now: ArrayLike<number> | undefined, q: number): number {
  return now ? percentileUs(histogramGrowth(prev, now), q) : 0;
}

/**
 * The longest submit call within the interval: the running maximum when it grew in the interval
 * (exact), else the upper bound of the highest bucket that grew, capped by the running maximum.
 */
export function intervalStallMaxUs(prev: DiskCountersSnapshot, now: DiskCountersSnapshot): number | undefined {
  if (now.submitStallMaxUs === undefined || !now.submitStallLog2Us) return undefined;
  if (now.submitStallMaxUs > (prev.submitStallMaxUs ?? 0)) return now.submitStallMaxUs;
  const grew = histogramGrowth(prev.submitStallLog2Us, now.submitStallLog2Us);
  const top = grew.findLastIndex((v) => v > 0);
  return top < 0 ? 0 : Math.min(bucketUpperUs(top), now.submitStallMaxUs);
}

const optional = <K extends string>(key: K, v: number | undefined): { [k in K]?: number } =>
  v === undefined ? {} : ({ [key]: v } as { [k in K]: number });

export class StatsSampler extends EventEmitter {
  private readonly ticks: StatsTick[] = [];
  private readonly prevDisks = new Map<string, Prev>();
  private readonly prevCpu = new Map<string, { pid: number; t: number; sec: number }>();
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private readonly intervalMs: number;
  private readonly now: () => number;

  /** `now` is the clock ticks are stamped with (tests drive it; default Date.now). */
  constructor(
    private readonly source: SampleSource,
    opts: { intervalMs?: number; now?: () => number } = {},
  ) {
    super();
    this.intervalMs = opts.intervalMs ?? SAMPLE_INTERVAL_MS;
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  history(sinceMs?: number): StatsTick[] {
    return sinceMs === undefined ? [...this.ticks] : this.ticks.filter((t) => t.t > sinceMs);
  }

  /** Takes one sample now (the timer calls this; tests may too). */
  async sample(): Promise<StatsTick | null> {
    if (this.busy) return null; // a slow stats() must not pile up samples
    this.busy = true;
    try {
      const t = this.now();
      const disks: DiskSample[] = [];
      const seen = new Set<string>();
      for (const { vmId, diskId, host } of this.source.diskHosts()) {
        const key = `${vmId ?? ''}/${diskId}`;
        seen.add(key);
        let c: DiskCountersSnapshot;
        try {
          c = await host.stats();
        } catch {
          continue; // the disk is stopping
        }
        const prev = this.prevDisks.get(key);
        this.prevDisks.set(key, { host, t, c });
        // A new server (restart, hot-plug at the same id) starts its counters again: no rate yet.
        if (!prev || prev.host !== host) continue;
        const dt = (t - prev.t) / 1000;
        if (dt <= 0) continue;
        const rate = (a: number, b: number) => Math.max(0, a - b) / dt;
        disks.push({
          vmId,
          diskId,
          readIops: rate(c.readOps, prev.c.readOps),
          writeIops: rate(c.writeOps, prev.c.writeOps),
          readMBps: rate(c.readBytes, prev.c.readBytes) / 1e6,
          writeMBps: rate(c.writeBytes, prev.c.writeBytes) / 1e6,
          latencyP50Us: percentileFromLog2(prev.c.latencyLog2Us, c.latencyLog2Us, 0.5),
          latencyP99Us: percentileFromLog2(prev.c.latencyLog2Us, c.latencyLog2Us, 0.99),
          queueDepth: c.inFlight,
          backendCpuPct: c.cpuSec !== undefined && prev.c.cpuSec !== undefined ? rate(c.cpuSec, prev.c.cpuSec) * 100 : 0,
          backendCpuSec: c.cpuSec ?? 0,
          ...(c.nowaitFallbacks !== undefined ? { nowaitFallbacksPerSec: rate(c.nowaitFallbacks, prev.c.nowaitFallbacks ?? 0) } : {}),
          ...optional('submitStallMaxUs', intervalStallMaxUs(prev.c, c)),
        });
      }
      for (const key of this.prevDisks.keys()) if (!seen.has(key)) this.prevDisks.delete(key);

      const vms: VmSample[] = [];
      const seenVm = new Set<string>();
      for (const { vmId, pid } of this.source.qemuProcesses()) {
        const sec = processCpuSeconds(pid);
        if (sec === null) continue;
        seenVm.add(vmId);
        const prev = this.prevCpu.get(vmId);
        this.prevCpu.set(vmId, { pid, t, sec });
        const pct = prev && prev.pid === pid && t > prev.t ? (Math.max(0, sec - prev.sec) / ((t - prev.t) / 1000)) * 100 : 0;
        vms.push({ vmId, qemuCpuPct: pct, qemuCpuSec: sec });
      }
      for (const key of this.prevCpu.keys()) if (!seenVm.has(key)) this.prevCpu.delete(key);

      const tick: StatsTick = { t, intervalMs: this.intervalMs, disks, vms };
      this.ticks.push(tick);
      while (this.ticks.length && this.ticks[0]!.t < t - HISTORY_MS) this.ticks.shift();
      this.emit('tick', tick);
      return tick;
    } finally {
      this.busy = false;
    }
  }
}
