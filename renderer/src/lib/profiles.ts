// The guest-like profiles' table (electron/shared/bench-profiles.ts): 4k random reads and writes
// and a 70/30 mix with 32 requests in flight, per mode, in IOPS: the median of the repeats, their
// spread, and the best mode per column. The 2009 post's table (compare.ts) leaves these rows out.
import { GUEST_PROFILES, profileLabel } from '../../../electron/shared/bench-profiles.js';
import { VARIANTS, variantOf, type Row } from './compare.js';

export interface ProfileTable {
  variants: string[];
  /** Column labels, in GUEST_PROFILES order ("random read 4k ×32", …). */
  columns: string[];
  /** variant -> column -> median IOPS */
  iops: Record<string, Record<string, number>>;
  /** variant -> column -> median MB/s */
  mbps: Record<string, Record<string, number>>;
  /** variant -> column -> (max − min) / median of the repeats; absent with one repeat */
  spread: Record<string, Record<string, number>>;
  /** column -> the variant with the most IOPS there */
  best: Record<string, string>;
  repeats: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export const isProfileRow = (r: Row): boolean => r.random === true || r.op === 'mixed';

export function buildProfileTable(all: Row[]): ProfileTable {
  const rows = all.filter(isProfileRow);
  const order = VARIANTS.map((v) => v.key);
  const variants = [...new Set(rows.map(variantOf))].sort((a, b) => order.indexOf(a) - order.indexOf(b));
  const known = GUEST_PROFILES.map(profileLabel);
  const labelOf = (r: Row) =>
    profileLabel({ op: r.op, recordBytes: r.recordBytes, random: true, iodepth: r.iodepth, readPercent: r.readPercent });
  const present = new Set(rows.map(labelOf));
  const columns = [...known.filter((c) => present.has(c)), ...[...present].filter((c) => !known.includes(c))];
  const cells = new Map<string, Row[]>();
  const repeats = new Set<number>();
  for (const r of rows) {
    const key = `${variantOf(r)}\u0000${labelOf(r)}`;
    cells.set(key, [...(cells.get(key) ?? []), r]);
    repeats.add(r.repeat ?? 0);
  }
  const iops: ProfileTable['iops'] = {};
  const mbps: ProfileTable['mbps'] = {};
  const spread: ProfileTable['spread'] = {};
  for (const [key, rs] of cells) {
    const [v, c] = key.split('\u0000');
    const m = median(rs.map((r) => r.iops));
    (iops[v] ??= {})[c] = m;
    (mbps[v] ??= {})[c] = median(rs.map((r) => r.mbps));
    if (rs.length > 1 && m > 0) (spread[v] ??= {})[c] = (Math.max(...rs.map((r) => r.iops)) - Math.min(...rs.map((r) => r.iops))) / m;
  }
  const best: ProfileTable['best'] = {};
  for (const c of columns) {
    const top = variants.filter((v) => iops[v]?.[c] !== undefined).sort((a, b) => iops[b][c] - iops[a][c])[0];
    if (top) best[c] = top;
  }
  return { variants, columns, iops, mbps, spread, best, repeats: Math.max(1, repeats.size) };
}
