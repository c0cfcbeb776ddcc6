// Axis tick labels that say something: as many decimals as the tick spacing needs (a tiny p99
// axis reads "0.5 µs, 1.0 µs, 1.5 µs", never "1µs, 1µs, 0µs"), one unit per axis, and clock
// times short enough not to collide on a narrow chart.

/** Decimals that write ticks `incr` apart exactly (0 for 1, 1 for 0.5 or 12.5, 2 for 0.05 or 0.25). */
export function decimalsFor(incr: number): number {
  if (!(incr > 0) || !Number.isFinite(incr)) return 0;
  for (let d = 0; d < 6; d++) {
    const scaled = incr * 10 ** d;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, scaled)) return d;
  }
  return 6;
}

export function numberTicks(splits: number[], incr: number): string[] {
  const d = decimalsFor(incr);
  return splits.map((v) => v.toFixed(d));
}

/** IOPS: thousands as "k" once the axis reaches 10k. */
export function iopsTicks(splits: number[], incr: number): string[] {
  const top = Math.max(0, ...splits);
  if (top < 10_000) return numberTicks(splits, incr);
  const d = decimalsFor(incr / 1000);
  return splits.map((v) => (v === 0 ? '0' : `${(v / 1000).toFixed(d)}k`));
}

/** Latency in microseconds: µs below a millisecond, ms above, one unit for the whole axis. */
export function latencyTicks(splitsUs: number[], incrUs: number): string[] {
  const top = Math.max(0, ...splitsUs);
  if (top >= 1000) {
    const d = decimalsFor(incrUs / 1000);
    return splitsUs.map((v) => `${(v / 1000).toFixed(d)} ms`);
  }
  const d = decimalsFor(incrUs);
  return splitsUs.map((v) => `${v.toFixed(d)} µs`);
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Clock time of epoch seconds: hh:mm, or hh:mm:ss when ticks are less than a minute apart. */
export function timeTicks(splitsSec: number[], incrSec: number): string[] {
  return splitsSec.map((t) => clock(t, incrSec < 60));
}

export function clock(epochSec: number, seconds = true): string {
  const d = new Date(epochSec * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}${seconds ? `:${pad(d.getSeconds())}` : ''}`;
}
