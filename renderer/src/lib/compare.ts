// The aio comparison's shape: the workloads of the 2009 native-AIO post (iozone at 16k, 64k,
// 256k records; dd with 20M transfers), its table (modes as rows) and a CSV of the raw rows.
import type { BenchRow } from '../../../electron/api/contract.js';
import { recordSize } from './format.js';

export const RECORDS = [16 << 10, 64 << 10, 256 << 10, 20 << 20] as const;
export const WORKLOADS = RECORDS.flatMap((recordBytes) => (['write', 'read'] as const).map((op) => ({ op, recordBytes })));

/** A row may carry `nowait` once the backend runs native+nowait as its own variant (issue 8 §8). */
export type Row = BenchRow & { nowait?: boolean };

export const variantOf = (r: Row) => (r.mode === 'native' && r.nowait ? 'native+nowait' : r.mode);
const VARIANT_ORDER = ['threads', 'native', 'native+nowait', 'io_uring'];

export interface Column {
  op: 'read' | 'write';
  recordBytes: number;
  label: string;
}

export interface Table {
  variants: string[];
  columns: Column[];
  /** variant -> column label -> MB/s */
  mbps: Record<string, Record<string, number>>;
  /** variant -> backend CPU seconds over all its runs */
  cpuSec: Record<string, number>;
}

export function columnLabel(op: string, recordBytes: number): string {
  return `${op} ${recordSize(recordBytes)}`;
}

export function buildTable(rows: Row[]): Table {
  const variants = [...new Set(rows.map(variantOf))].sort((a, b) => VARIANT_ORDER.indexOf(a) - VARIANT_ORDER.indexOf(b));
  const seen = new Map<string, Column>();
  for (const w of WORKLOADS) seen.set(columnLabel(w.op, w.recordBytes), { ...w, label: columnLabel(w.op, w.recordBytes) });
  for (const r of rows) {
    const label = columnLabel(r.op, r.recordBytes);
    if (!seen.has(label)) seen.set(label, { op: r.op, recordBytes: r.recordBytes, label });
  }
  const present = new Set(rows.map((r) => columnLabel(r.op, r.recordBytes)));
  const columns = [...seen.values()].filter((c) => present.has(c.label));
  const mbps: Table['mbps'] = {};
  const cpuSec: Table['cpuSec'] = {};
  for (const r of rows) {
    const v = variantOf(r);
    (mbps[v] ??= {})[columnLabel(r.op, r.recordBytes)] = r.mbps;
    cpuSec[v] = (cpuSec[v] ?? 0) + r.cpuSec;
  }
  return { variants, columns, mbps, cpuSec };
}

const csvField = (v: string | number) => (typeof v === 'number' ? String(v) : /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

export function toCsv(rows: Row[]): string {
  const head = ['mode', 'op', 'record_bytes', 'mb_per_s', 'iops', 'backend_cpu_s'];
  const body = rows.map((r) => [variantOf(r), r.op, r.recordBytes, r.mbps, r.iops, r.cpuSec].map(csvField).join(','));
  return [head.join(','), ...body].join('\n') + '\n';
}
