import { describe, expect, it } from 'vitest';
import { stallEvents } from './stalls.js';
import type { DiskSample } from '../../../electron/shared/api.js';

const s = (p99: number, extra: Partial<DiskSample> = {}): DiskSample => ({
  vmId: 'v',
  diskId: 'd0',
  readIops: 10,
  writeIops: 10,
  readMBps: 1,
  writeMBps: 1,
  latencyP50Us: 0,
  latencyP99Us: p99,
  queueDepth: 1,
  backendCpuPct: 1,
  backendCpuSec: 0,
  ...extra,
});

describe('stallEvents', () => {
  const t = [1, 2, 3, 4, 5, 6, 7, 8];
  it('finds stalls, fallbacks and p99 spikes, one event per run of ticks at its worst, newest first', () => {
    const samples = [
      s(500),
      s(500, { submitStallMaxUs: 6000 }),
      s(500, { submitStallMaxUs: 12000 }),
      s(500),
      s(9000),
      s(500, { nowaitFallbacksPerSec: 40 }),
      null,
      s(500, { submitStallMaxUs: 100 }),
    ];
    expect(stallEvents(t, samples)).toEqual([
      { kind: 'fallback', t: 6, value: 40, ticks: 1 },
      { kind: 'spike', t: 5, value: 9000, ticks: 1 },
      { kind: 'stall', t: 3, value: 12000, ticks: 2 },
    ]);
  });
  it('a quiet disk has none', () => {
    expect(
      stallEvents(
        t,
        t.map(() => s(400)),
      ),
    ).toEqual([]);
    expect(
      stallEvents(
        t,
        t.map(() => null),
      ),
    ).toEqual([]);
  });
});
