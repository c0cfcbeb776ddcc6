import { describe, expect, it } from 'vitest';
import { switchDelta } from './delta.js';
import type { DiskSample } from '../../../electron/shared/api.js';

const s = (writeMBps: number, p99: number, cpu: number): DiskSample => ({
  vmId: 'v',
  diskId: 'd0',
  readIops: 0,
  writeIops: writeMBps > 0 ? 100 : 0,
  readMBps: 0,
  writeMBps,
  latencyP50Us: 0,
  latencyP99Us: p99,
  queueDepth: 0,
  backendCpuPct: cpu,
  backendCpuSec: 0,
});

describe('switchDelta', () => {
  const t = Array.from({ length: 40 }, (_x, i) => 1000 + i * 0.5);
  const samples = t.map((x) => (x < 1010 ? s(100, 1000, 10) : s(118, 600, 8)));

  it('compares equal windows before and after the switch', () => {
    const d = switchDelta(t, samples, 1010)!;
    expect(d.windowSec).toBe(10);
    expect(d.before.writeMBps).toBeCloseTo(100);
    expect(d.after.writeMBps).toBeCloseTo(118);
    expect(d.words).toBe('write +18%, p99 −40%, backend CPU −2 points');
  });

  it('waits until both sides have samples, and says nothing without I/O', () => {
    expect(switchDelta(t, samples, 1019)).toBeNull();
    const idle = t.map(() => s(0, 0, 0.1));
    expect(switchDelta(t, idle, 1010)!.words).toBeNull();
  });

  it('ignores ticks where the disk was not served', () => {
    const gaps = samples.map((x, i) => (i % 2 ? null : x));
    const d = switchDelta(t, gaps, 1010)!;
    // Served every other tick, up to t = 1019: 9 s each side, one sample a second.
    expect(d.windowSec).toBe(9);
    expect(d.before.samples).toBe(9);
    expect(d.after.samples).toBe(9);
  });
});
