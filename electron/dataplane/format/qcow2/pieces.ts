// A guest byte range split at cluster boundaries: one piece per cluster, with its L1/L2 index, its
// L2 table and entry (entries.ts), and where it sits in the request.
import type { L2Entry } from './entries.js';
import type { CachedTable } from './table-cache.js';
import { BlockOp } from '../../block/types.js';
import type { DriverCtx, Req } from './request.js';

export interface Piece {
  /** Bytes into the request. */
  rel: number;
  len: number;
  gc: number;
  inOff: number;
  l1i: number;
  l2i: number;
  table: CachedTable | null;
  entry: L2Entry;
}

/** The cluster pieces of guest bytes [abs, abs + len) (request bytes from `rel`), with the L2
 *  tables from `tables` (loaded ones) or the cache; null when one is not at hand. */
export function pieces(ctx: DriverCtx, rel: number, abs: number, len: number, tables?: Map<number, CachedTable | null>): Piece[] | null {
  const out: Piece[] = [];
  const { l2Entries } = ctx.image;
  for (let pos = 0; pos < len;) {
    const g = abs + pos;
    const gc = Math.floor(g / ctx.cs);
    const inOff = g % ctx.cs;
    const n = Math.min(ctx.cs - inOff, len - pos);
    const l1i = Math.floor(gc / l2Entries);
    const table = tables?.has(l1i) ? tables.get(l1i)! : ctx.image.peekL2(l1i);
    if (table === undefined) return null;
    const l2i = gc % l2Entries;
    out.push({ rel: rel + pos, len: n, gc, inOff, l1i, l2i, table, entry: ctx.image.entry(table, l2i) });
    pos += n;
  }
  return out;
}

/** The pieces with their L2 tables loaded (held here even if the cache drops them meanwhile). */
export async function loadPieces(ctx: DriverCtx, rel: number, abs: number, len: number): Promise<Piece[]> {
  const tables = new Map<number, CachedTable | null>();
  const first = Math.floor(Math.floor(abs / ctx.cs) / ctx.image.l2Entries);
  const last = Math.floor(Math.floor((abs + Math.max(len, 1) - 1) / ctx.cs) / ctx.image.l2Entries);
  for (let i = first; i <= last; i++) tables.set(i, await ctx.image.loadL2(i));
  return pieces(ctx, rel, abs, len, tables)!;
}

/** The hot path: when `req` (a read, or a write) lies inside one guest cluster whose L2 table is
 *  cached and whose entry is a normal cluster in the image (for a write: COPIED in L1 and L2, not
 *  held by an allocating write, not metadata), issues it as one host request on the guest's own
 *  segments and returns true; false (nothing done) when the general path must decide. Makes no
 *  object. */
export function singleClusterFastPath(ctx: DriverCtx, req: Req, op: typeof BlockOp.Read | typeof BlockOp.Write): boolean {
  const host = singleClusterHost(ctx, req, op === BlockOp.Write);
  if (host < 0) return false;
  req.pending++;
  ctx.io.begin(op, host, req.length, 0, ctx.partDone, req);
  for (let i = 0; i < req.segs.length; i += 3) ctx.io.segment(req.segs[i]!, req.segs[i + 1]!, req.segs[i + 2]!);
  ctx.part(req, 0);
  return true;
}

/** The host byte where `req` starts on the fast path, or -1. */
function singleClusterHost(ctx: DriverCtx, req: Req, forWrite: boolean): number {
  const gc = Math.floor(req.offset / ctx.cs);
  const inOff = req.offset - gc * ctx.cs;
  if (req.length === 0 || inOff + req.length > ctx.cs) return -1;
  const cluster = ctx.image.cachedHost(gc, forWrite);
  if (cluster < 0 || !hostOk(ctx, cluster, ctx.cs)) return -1;
  if (forWrite && (ctx.clusterLocks.has(gc) || ctx.image.isMetadata(cluster / ctx.cs))) return -1;
  return cluster + inOff;
}

/** Whether host bytes [offset, offset + len) lie in the image: past the header cluster, before its end. */
export function hostOk(ctx: DriverCtx, offset: number, len: number): boolean {
  return offset >= ctx.cs && offset + len <= ctx.image.refs.fileEnd;
}
