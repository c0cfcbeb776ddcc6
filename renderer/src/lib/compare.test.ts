import { describe, expect, it } from 'vitest';
import { buildTable, toCsv, bestPerColumn, fastest, contextOf, type Row } from './compare.js';

const row = (mode: Row['mode'], op: Row['op'], recordBytes: number, mbps: number, extra: Partial<Row> = {}): Row => ({
  mode,
  op,
  recordBytes,
  mbps,
  iops: mbps * 10,
  cpuSec: 1,
  ...extra,
});

describe('aio comparison table', () => {
  it('puts modes in rows and workloads in the 2009 column order', () => {
    const t = buildTable([
      row('io_uring', 'read', 16384, 3),
      row('threads', 'write', 65536, 1),
      row('native', 'write', 16384, 2),
      row('native', 'read', 20 << 20, 9),
    ]);
    expect(t.variants).toEqual(['threads', 'native', 'io_uring']);
    expect(t.columns.map((c) => c.label)).toEqual(['write 16k', 'read 16k', 'write 64k', 'read 20M']);
    expect(t.mbps.native['read 20M']).toBe(9);
    expect(t.cpuSec.native).toBe(2);
  });

  it('keeps native+nowait as its own row', () => {
    const t = buildTable([row('native', 'write', 16384, 2), row('native', 'write', 16384, 5, { nowait: true })]);
    expect(t.variants).toEqual(['native', 'native+nowait']);
    expect(t.mbps['native+nowait']['write 16k']).toBe(5);
  });

  it('exports every row as CSV', () => {
    expect(toCsv([row('threads', 'write', 16384, 1.5, { kbps: 1465 })])).toBe(
      'mode,op,record_bytes,mb_per_s,kib_per_s,iops,backend_cpu_s,nowait_fallbacks\nthreads,write,16384,1.5,1465,15,1,\n',
    );
  });

  it("shows the post's units: KB/s for record sizes, MB/s for 20M transfers", () => {
    const t = buildTable([row('native', 'write', 16384, 2.048, { kbps: 2000 }), row('native', 'read', 20 << 20, 116)]);
    expect(t.columns.map((c) => c.unit)).toEqual(['KB/s', 'MB/s']);
    expect(t.post.native['write 16k']).toBe(2000);
    expect(t.post.native['read 20M']).toBe(116);
  });
});

describe('comparison results as a decision', () => {
  const rows: Row[] = [
    row('threads', 'write', 65536, 100),
    row('threads', 'read', 65536, 300),
    row('native', 'write', 65536, 180),
    row('native', 'read', 65536, 280),
    row('io_uring', 'write', 65536, 200),
    row('io_uring', 'read', 65536, 310),
  ];
  const settings = {
    path: '/d.img',
    cache: 'none' as const,
    directIo: true,
    iodepth: 1,
    bytesPerRun: 1 << 20,
    freshSparseWrites: false,
    preserved: true,
  };
  const info = { disk: '/d.img', sizeBytes: 1 << 30, startedAt: '2026-01-02T03:04:05.000Z', kernel: '6.1.0-test' };

  it('marks the best mode per column and finds the fastest overall', () => {
    const t = buildTable(rows);
    expect(bestPerColumn(t)).toEqual({ 'write 64k': 'io_uring', 'read 64k': 'io_uring' });
    const f = fastest({ rows, settings, info })!;
    expect(f.modes).toEqual({ aio: 'io_uring', cache: 'none', nowait: 'off' });
    expect(f.label).toBe('io_uring + none');
    expect(f.evidence).toBe('write 64k 200 MB/s, read 64k 310 MB/s');
    expect(f.at).toBe(info.startedAt);
  });

  it('native with nowait becomes nowait on', () => {
    const f = fastest({ rows: [row('threads', 'write', 65536, 1), row('native', 'write', 65536, 9, { nowait: true })], settings, info })!;
    expect(f.modes).toEqual({ aio: 'native', cache: 'none', nowait: 'on' });
  });

  it('the CSV repeats disk, cache, size, date and kernel on every row', () => {
    const csv = toCsv(rows.slice(0, 1), contextOf({ settings, info })).trim().split('\n');
    expect(csv[0]).toBe('mode,op,record_bytes,mb_per_s,kib_per_s,iops,backend_cpu_s,nowait_fallbacks,disk,cache,size_bytes,date,kernel');
    expect(csv[1]).toBe('threads,write,65536,100,,1000,1,,/d.img,none,1073741824,2026-01-02T03:04:05.000Z,6.1.0-test');
  });
});

describe('repeated tables', () => {
  it('shows the median of each cell and the spread of its repeats', () => {
    const t = buildTable([
      row('threads', 'write', 65536, 100, { repeat: 0 }),
      row('threads', 'write', 65536, 110, { repeat: 1 }),
      row('threads', 'write', 65536, 90, { repeat: 2 }),
      row('io_uring', 'write', 65536, 200, { repeat: 0 }),
      row('io_uring', 'write', 65536, 200, { repeat: 1 }),
      row('io_uring', 'write', 65536, 200, { repeat: 2 }),
    ]);
    expect(t.repeats).toBe(3);
    expect(t.mbps.threads['write 64k']).toBe(100);
    expect(t.spread.threads['write 64k']).toBeCloseTo(0.2);
    expect(t.spread.io_uring['write 64k']).toBe(0);
    expect(t.cpuSec.threads).toBe(1);
  });
  it('one repeat has no spread', () => {
    const t = buildTable([row('threads', 'write', 65536, 100)]);
    expect(t.repeats).toBe(1);
    expect(t.spread).toEqual({});
  });
});
