// Evidence behind the advice: a disk's submission stalls, nowait fallbacks and p99
// spikes over the stats window, as events a user can read ("io_submit stalled 10 ms at 01:15:32").
// Consecutive ticks of one kind are one event, reported at its worst.
import type { DiskSample } from '../../../electron/shared/api.js';

export type StallKind = 'stall' | 'fallback' | 'spike';
export interface StallEvent {
  kind: StallKind;
  /** Epoch seconds of the worst tick. */
  t: number;
  /** The worst value: µs for stalls and spikes, requests/s for fallbacks. */
  value: number;
  /** How many consecutive ticks it lasted. */
  ticks: number;
}

/** A submission that takes this long blocked the disk's thread. */
export const STALL_US = 5000;
/** A p99 this many times the window's median (and at least SPIKE_MIN_US) is a spike. */
export const SPIKE_FACTOR = 4;
export const SPIKE_MIN_US = 1000;

export function stallEvents(t: number[], samples: (DiskSample | null)[]): StallEvent[] {
  const busy = samples
    .filter((s): s is DiskSample => !!s && s.readIops + s.writeIops > 0)
    .map((s) => s.latencyP99Us)
    .sort((a, b) => a - b);
  const median = busy.length ? busy[Math.floor(busy.length / 2)] : 0;
  const checks: [StallKind, (s: DiskSample) => number | null][] = [
    ['stall', (s) => (s.submitStallMaxUs !== undefined && s.submitStallMaxUs >= STALL_US ? s.submitStallMaxUs : null)],
    ['fallback', (s) => (s.nowaitFallbacksPerSec ? s.nowaitFallbacksPerSec : null)],
    ['spike', (s) => (median > 0 && s.latencyP99Us >= Math.max(SPIKE_MIN_US, SPIKE_FACTOR * median) ? s.latencyP99Us : null)],
  ];
  const out: StallEvent[] = [];
  for (const [kind, value] of checks) {
    let open: StallEvent | null = null;
    samples.forEach((s, i) => {
      const v = s ? value(s) : null;
      if (v === null) {
        open = null;
        return;
      }
      if (open) {
        open.ticks++;
        if (v > open.value) Object.assign(open, { value: v, t: t[i] });
      } else {
        open = { kind, t: t[i], value: v, ticks: 1 };
        out.push(open);
      }
    });
  }
  return out.sort((a, b) => b.t - a.t);
}
