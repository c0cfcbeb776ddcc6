// A live mode switch as an experiment: the disk's numbers over equal windows before
// and after the switch, as the changes a user reads ("write +18%, p99 −40%, backend CPU −2 points").
import type { DiskSample } from '../../../electron/shared/api.js';

export interface WindowStats {
  readMBps: number;
  writeMBps: number;
  p99Us: number;
  cpuPct: number;
  samples: number;
}

export interface SwitchDelta {
  /** Seconds on each side. */
  windowSec: number;
  before: WindowStats;
  after: WindowStats;
  /** "write +18%, read −3%, p99 −40%, backend CPU −2 points", or null without I/O on both sides. */
  words: string | null;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

function windowStats(t: number[], samples: (DiskSample | null)[], from: number, to: number): WindowStats {
  const inside = samples.filter((s, i): s is DiskSample => s !== null && t[i] >= from && t[i] < to);
  // p99 of idle ticks is 0: average it over the ticks that did I/O.
  const busy = inside.filter((s) => s.readIops + s.writeIops > 0);
  return {
    readMBps: mean(inside.map((s) => s.readMBps)),
    writeMBps: mean(inside.map((s) => s.writeMBps)),
    p99Us: mean(busy.map((s) => s.latencyP99Us)),
    cpuPct: mean(inside.map((s) => s.backendCpuPct)),
    samples: inside.length,
  };
}

const pctChange = (a: number, b: number) => Math.round(((b - a) / a) * 100);
const signed = (n: number) => (n > 0 ? `+${n}` : n < 0 ? `−${-n}` : '±0');

/**
 * Before and after the switch at `at` (epoch s), over the longest equal windows the data allows,
 * at most `maxWindowSec` each; null until both sides have at least `minSamples` ticks.
 */
export function switchDelta(
  t: number[],
  samples: (DiskSample | null)[],
  at: number,
  maxWindowSec = 60,
  minSamples = 4,
): SwitchDelta | null {
  const first = t.find((_x, i) => samples[i] !== null);
  const last = t.findLast((_x, i) => samples[i] !== null);
  if (first === undefined || last === undefined) return null;
  const w = Math.min(maxWindowSec, at - first, last - at);
  if (!(w > 0)) return null;
  const before = windowStats(t, samples, at - w, at);
  const after = windowStats(t, samples, at, at + w);
  if (before.samples < minSamples || after.samples < minSamples) return null;
  const parts: string[] = [];
  if (before.writeMBps > 0.05 && after.writeMBps > 0.05) parts.push(`write ${signed(pctChange(before.writeMBps, after.writeMBps))}%`);
  if (before.readMBps > 0.05 && after.readMBps > 0.05) parts.push(`read ${signed(pctChange(before.readMBps, after.readMBps))}%`);
  if (before.p99Us > 0 && after.p99Us > 0) parts.push(`p99 ${signed(pctChange(before.p99Us, after.p99Us))}%`);
  if (parts.length) parts.push(`backend CPU ${signed(Math.round(after.cpuPct - before.cpuPct))} points`);
  return { windowSec: Math.round(w), before, after, words: parts.length ? parts.join(', ') : null };
}
