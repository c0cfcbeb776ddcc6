// The aio comparison's shape: the workloads of the 2009 native-AIO post (iozone at 16k, 64k,
// 256k records; dd with 20M transfers), its table (modes as rows) and a CSV of the raw rows.
import type { BenchRow, Result } from '../../../electron/shared/api.js';
import { ENGINE_VARIANTS, variantName } from '../../../electron/shared/modes.js';
import { recordSize } from './format.js';
import type { Measured } from './presets.js';

type BenchResult = Result<'bench.result'>;

export const RECORDS = [16 << 10, 64 << 10, 256 << 10, 20 << 20] as const;
export const WORKLOADS = RECORDS.flatMap((recordBytes) => (['write', 'read'] as const).map((op) => ({ op, recordBytes })));

/** native+nowait is its own variant: `nowait` tells it apart from plain native. */
export type Row = BenchRow;

/** The variants the panel offers, in the table's order. */
export const VARIANTS = ENGINE_VARIANTS.map((v) => ({ key: variantName(v), aio: v.aio, nowait: v.nowait }));

/** Like the post: iozone's record-size columns in KB/s (1024 bytes), dd's 20M transfers in MB/s. */
export const unitOf = (recordBytes: number): 'KB/s' | 'MB/s' => (recordBytes >= 1 << 20 ? 'MB/s' : 'KB/s');

export const variantOf = (r: Row) => variantName({ aio: r.mode, nowait: r.nowait ?? false });
const VARIANT_ORDER = VARIANTS.map((v) => v.key);

export interface Column {
  op: Row['op'];
  recordBytes: number;
  label: string;
  unit: 'KB/s' | 'MB/s';
}

export interface Table {
  variants: string[];
  columns: Column[];
  /** variant -> column label -> MB/s */
  mbps: Record<string, Record<string, number>>;
  /** variant -> column label -> the post's unit for that column (KB/s for records, MB/s for 20M) */
  post: Record<string, Record<string, number>>;
  /** variant -> requests that bounced under nowait and went through the thread pool */
  fallbacks: Record<string, number>;
  /** variant -> backend CPU seconds over all its runs (of one repeat, on average) */
  cpuSec: Record<string, number>;
  /** variant -> column label -> (max − min) / median over the repeats; absent with one repeat */
  spread: Record<string, Record<string, number>>;
  /** How many times the table was measured. */
  repeats: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export function columnLabel(op: string, recordBytes: number): string {
  return `${op} ${recordSize(recordBytes)}`;
}

export function buildTable(all: Row[]): Table {
  // Guest-like profiles (random offsets) have their own table (profiles.ts).
  const rows = all.filter((r) => r.random !== true && r.op !== 'mixed');
  const variants = [...new Set(rows.map(variantOf))].sort((a, b) => VARIANT_ORDER.indexOf(a) - VARIANT_ORDER.indexOf(b));
  const seen = new Map<string, Column>();
  for (const w of WORKLOADS)
    seen.set(columnLabel(w.op, w.recordBytes), { ...w, label: columnLabel(w.op, w.recordBytes), unit: unitOf(w.recordBytes) });
  for (const r of rows) {
    const label = columnLabel(r.op, r.recordBytes);
    if (!seen.has(label)) seen.set(label, { op: r.op, recordBytes: r.recordBytes, label, unit: unitOf(r.recordBytes) });
  }
  const present = new Set(rows.map((r) => columnLabel(r.op, r.recordBytes)));
  const columns = [...seen.values()].filter((c) => present.has(c.label));
  // Every repeat of a cell, then its median (a repeated table shows how steady each cell is).
  const cells = new Map<string, { mbps: number[]; post: number[] }>();
  const cpuSec: Table['cpuSec'] = {};
  const fallbacks: Table['fallbacks'] = {};
  const repeatsOf: Record<string, Set<number>> = {};
  for (const r of rows) {
    const v = variantOf(r);
    const key = `${v}\u0000${columnLabel(r.op, r.recordBytes)}`;
    const c = cells.get(key) ?? { mbps: [], post: [] };
    c.mbps.push(r.mbps);
    c.post.push(unitOf(r.recordBytes) === 'MB/s' ? r.mbps : (r.kbps ?? (r.mbps * 1e6) / 1024));
    cells.set(key, c);
    cpuSec[v] = (cpuSec[v] ?? 0) + r.cpuSec;
    fallbacks[v] = (fallbacks[v] ?? 0) + (r.nowaitFallbacks ?? 0);
    (repeatsOf[v] ??= new Set()).add(r.repeat ?? 0);
  }
  const mbps: Table['mbps'] = {};
  const post: Table['post'] = {};
  const spread: Table['spread'] = {};
  for (const [key, c] of cells) {
    const [v, label] = key.split('\u0000');
    const m = median(c.mbps);
    (mbps[v] ??= {})[label] = m;
    (post[v] ??= {})[label] = median(c.post);
    if (c.mbps.length > 1 && m > 0) (spread[v] ??= {})[label] = (Math.max(...c.mbps) - Math.min(...c.mbps)) / m;
  }
  let repeats = 1;
  for (const v of variants) {
    const n = repeatsOf[v]?.size ?? 1;
    repeats = Math.max(repeats, n);
    cpuSec[v] /= n;
    fallbacks[v] = Math.round(fallbacks[v] / n);
  }
  return { variants, columns, mbps, post, cpuSec, fallbacks, spread, repeats };
}

const csvField = (v: string | number) => (typeof v === 'number' ? String(v) : /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

/** Where and how a run was measured, repeated on every CSV row so each row stands on its own. */
export interface RunContext {
  disk: string;
  cache: string;
  sizeBytes: number;
  /** ISO date the run started. */
  date: string;
  kernel: string;
}

export function contextOf(r: Pick<BenchResult, 'info' | 'settings'>): RunContext | null {
  if (!r.info || !r.settings) return null;
  return { disk: r.info.disk, cache: r.settings.cache, sizeBytes: r.info.sizeBytes, date: r.info.startedAt, kernel: r.info.kernel };
}

export function toCsv(rows: Row[], ctx?: RunContext | null): string {
  const head = [
    'mode',
    'op',
    'record_bytes',
    'mb_per_s',
    'kib_per_s',
    'iops',
    'backend_cpu_s',
    'nowait_fallbacks',
    ...(ctx ? ['disk', 'cache', 'size_bytes', 'date', 'kernel'] : []),
  ];
  const tail = ctx ? [ctx.disk, ctx.cache, ctx.sizeBytes, ctx.date, ctx.kernel] : [];
  const body = rows.map((r) =>
    [variantOf(r), r.op, r.recordBytes, r.mbps, r.kbps ?? '', r.iops, r.cpuSec, r.nowaitFallbacks ?? '', ...tail].map(csvField).join(','),
  );
  return [head.join(','), ...body].join('\n') + '\n';
}

/** Column label -> the variant with the highest throughput there (the table marks it). */
export function bestPerColumn(t: Table): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of t.columns) {
    let best: string | null = null;
    for (const v of t.variants) {
      const x = t.mbps[v]?.[c.label];
      if (x !== undefined && (best === null || x > t.mbps[best][c.label])) best = v;
    }
    if (best) out[c.label] = best;
  }
  return out;
}

/** Each variant's throughput relative to the best in every column, as one geometric mean (1 = best everywhere). */
export function scores(t: Table): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of t.variants) {
    let logSum = 0;
    let n = 0;
    for (const c of t.columns) {
      const x = t.mbps[v]?.[c.label];
      const top = Math.max(...t.variants.map((w) => t.mbps[w]?.[c.label] ?? 0));
      if (x === undefined || !(top > 0)) continue;
      logSum += Math.log(Math.max(x, 1e-9) / top);
      n++;
    }
    out[v] = n ? Math.exp(logSum / n) : 0;
  }
  return out;
}

const VARIANT_WORDS: Record<string, string> = {
  threads: 'threads',
  native: 'native',
  'native+nowait': 'native with nowait',
  io_uring: 'io_uring',
};

/** The modes a completed run found fastest over all its columns, for the "Fastest on this disk" preset; null with fewer than two modes. */
export function fastest(run: Pick<BenchResult, 'rows' | 'settings' | 'info'>): Measured | null {
  if (!run.settings) return null;
  const t = buildTable(run.rows);
  if (t.variants.length < 2) return null;
  const sc = scores(t);
  const best = t.variants.reduce((a, b) => (sc[b] > sc[a] ? b : a));
  const variant = VARIANTS.find((v) => v.key === best);
  if (!variant) return null;
  const cache = run.settings.cache;
  const shown = t.columns.filter((c) => c.recordBytes === 64 << 10);
  const evidence = (shown.length ? shown : t.columns.slice(0, 2))
    .map((c) => `${c.label} ${t.mbps[best][c.label]?.toFixed(0) ?? '—'} MB/s`)
    .join(', ');
  return {
    modes: { aio: variant.aio, cache, nowait: variant.nowait ? 'on' : 'off' },
    label: `${VARIANT_WORDS[best]} + ${cache}`,
    at: run.info?.startedAt ?? new Date().toISOString(),
    evidence,
  };
}
