import { describe, it, expect } from 'vitest';
import { buildProfileTable } from './profiles.js';
import { buildTable, type Row } from './compare.js';

const row = (mode: Row['mode'], op: Row['op'], iops: number, repeat = 0, extra: Partial<Row> = {}): Row => ({
  mode,
  op,
  recordBytes: 4096,
  mbps: (iops * 4096) / 1e6,
  iops,
  cpuSec: 0.1,
  random: true,
  iodepth: 32,
  repeat,
  ...(op === 'mixed' ? { readPercent: 70 } : {}),
  ...extra,
});

describe('guest-like profiles table', () => {
  const rows: Row[] = [
    row('threads', 'read', 1000, 0),
    row('threads', 'read', 1200, 1),
    row('threads', 'read', 1100, 2),
    row('io_uring', 'read', 3000, 0),
    row('io_uring', 'read', 2800, 1),
    row('io_uring', 'read', 3100, 2),
    row('threads', 'mixed', 900),
    row('io_uring', 'mixed', 700),
    { mode: 'threads', op: 'write', recordBytes: 65536, mbps: 50, iops: 800, cpuSec: 0.1 },
  ];
  it('takes only the random rows, in the profiles order, with medians, spread and the best per column', () => {
    const t = buildProfileTable(rows);
    expect(t.columns).toEqual(['random read 4k ×32', 'mixed 70/30 4k ×32']);
    expect(t.variants).toEqual(['threads', 'io_uring']);
    expect(t.iops.threads['random read 4k ×32']).toBe(1100);
    expect(t.spread.io_uring['random read 4k ×32']).toBeCloseTo(300 / 3000);
    expect(t.best).toEqual({ 'random read 4k ×32': 'io_uring', 'mixed 70/30 4k ×32': 'threads' });
    expect(t.repeats).toBe(3);
  });
  it("leaves the post's table to the sequential rows", () => {
    expect(buildTable(rows).columns.map((c) => c.label)).toEqual(['write 64k']);
  });
});
