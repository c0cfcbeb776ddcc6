import { describe, expect, it } from 'vitest';
import { buildTable, toCsv, type Row } from './compare.js';

const row = (mode: Row['mode'], op: Row['op'], recordBytes: number, mbps: number, extra: Partial<Row> = {}): Row => ({ mode, op, recordBytes, mbps, iops: mbps * 10, cpuSec: 1, ...extra });

describe('aio comparison table', () => {
  it('puts modes in rows and workloads in the 2009 column order', () => {
    const t = buildTable([row('io_uring', 'read', 16384, 3), row('threads', 'write', 65536, 1), row('native', 'write', 16384, 2), row('native', 'read', 20 << 20, 9)]);
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
    expect(toCsv([row('threads', 'write', 16384, 1.5, { kbps: 1465 })])).toBe('mode,op,record_bytes,mb_per_s,kib_per_s,iops,backend_cpu_s,nowait_fallbacks\nthreads,write,16384,1.5,1465,15,1,\n');
  });

  it("shows the post's units: KB/s for record sizes, MB/s for 20M transfers", () => {
    const t = buildTable([row('native', 'write', 16384, 2.048, { kbps: 2000 }), row('native', 'read', 20 << 20, 116)]);
    expect(t.columns.map((c) => c.unit)).toEqual(['KB/s', 'MB/s']);
    expect(t.post.native['write 16k']).toBe(2000);
    expect(t.post.native['read 20M']).toBe(116);
  });
});
