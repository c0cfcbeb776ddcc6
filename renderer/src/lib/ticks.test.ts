import { describe, expect, it } from 'vitest';
import { decimalsFor, iopsTicks, latencyTicks, numberTicks, timeTicks } from './ticks.js';

describe('axis ticks', () => {
  it('gives as many decimals as the spacing needs', () => {
    expect(decimalsFor(1)).toBe(0);
    expect(decimalsFor(10)).toBe(0);
    expect(decimalsFor(0.5)).toBe(1);
    expect(decimalsFor(0.2)).toBe(1);
    expect(decimalsFor(0.05)).toBe(2);
    expect(decimalsFor(12.5)).toBe(1);
    expect(decimalsFor(0.25)).toBe(2);
    expect(decimalsFor(0)).toBe(0);
  });

  it('a tiny p99 axis reads distinct values', () => {
    const t = latencyTicks([0, 0.2, 0.4, 0.6, 0.8, 1], 0.2);
    expect(new Set(t).size).toBe(t.length);
    expect(t).toEqual(['0.0 µs', '0.2 µs', '0.4 µs', '0.6 µs', '0.8 µs', '1.0 µs']);
  });

  it('switches the whole latency axis to ms once it reaches a millisecond', () => {
    expect(latencyTicks([0, 500, 1000, 1500], 500)).toEqual(['0.0 ms', '0.5 ms', '1.0 ms', '1.5 ms']);
    expect(latencyTicks([0, 10_000, 20_000], 10_000)).toEqual(['0 ms', '10 ms', '20 ms']);
    expect(latencyTicks([0, 100, 200], 100)).toEqual(['0 µs', '100 µs', '200 µs']);
  });

  it('numbers and IOPS', () => {
    expect(numberTicks([0, 0.5, 1], 0.5)).toEqual(['0.0', '0.5', '1.0']);
    expect(iopsTicks([0, 250, 500], 250)).toEqual(['0', '250', '500']);
    expect(iopsTicks([0, 10_000, 20_000], 10_000)).toEqual(['0', '10k', '20k']);
    expect(iopsTicks([0, 12_500, 25_000], 12_500)).toEqual(['0', '12.5k', '25.0k']);
  });

  it('clock times: seconds only when ticks are less than a minute apart', () => {
    const t0 = new Date(2026, 0, 2, 13, 4, 5).getTime() / 1000;
    expect(timeTicks([t0], 10)).toEqual(['13:04:05']);
    expect(timeTicks([t0], 60)).toEqual(['13:04']);
  });
});
