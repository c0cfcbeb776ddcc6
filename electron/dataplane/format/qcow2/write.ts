// The qcow2 write path (guest data, or zeros for write-zeroes): clusters this image owns alone
// (COPIED set in L1 and L2) are written in place, on the synchronous path when their L2 tables are
// cached; the others allocate (allocate.ts). Every guest cluster a write allocates is held
// (cluster-locks.ts) from before its entry is read until its new entry is set.
import { SpindleError } from '../../../shared/errors.js';
import { FORMAT_SLOT } from '../../block/stats.js';
import { BlockOp } from '../../block/types.js';
import { allocate } from './allocate.js';
import { hostOk, loadPieces, pieces, singleClusterFastPath, type Piece } from './pieces.js';
import type { DriverCtx, Req } from './request.js';
import { forSlice, type Segments } from './segments.js';

function inPlace(ctx: DriverCtx, p: Piece): boolean {
  const e = p.entry;
  return (
    p.table !== null &&
    e.kind === 'normal' &&
    e.copied &&
    !e.invalid &&
    ctx.image.l1Entry(p.l1i).copied &&
    !ctx.clusterLocks.has(p.gc) &&
    hostOk(ctx, e.offset, ctx.cs) &&
    !ctx.image.isMetadata(e.offset / ctx.cs)
  );
}

/** Issues the write when all of it goes in place with every L2 table cached; false (nothing
 *  done) otherwise. */
export function tryWrite(ctx: DriverCtx, req: Req): boolean {
  if (singleClusterFastPath(ctx, req, BlockOp.Write)) {
    ctx.count(FORMAT_SLOT.inPlaceWrites);
    return true;
  }
  const p = pieces(ctx, 0, req.offset, req.length);
  if (!p || !p.every((x) => inPlace(ctx, x))) return false;
  req.pending += emitInPlace(ctx, req.segs, p, false, (res) => ctx.part(req, res));
  ctx.part(req, 0);
  ctx.count(FORMAT_SLOT.inPlaceWrites);
  return true;
}

/** In-place writes (guest data or zeros) of allocated clusters, merged where the host is
 *  contiguous; `done` is called once per host request. Returns how many were begun. */
function emitInPlace(ctx: DriverCtx, segs: Segments, pieces: Piece[], zeros: boolean, done: (res: number) => void): number {
  let runs = 0;
  let run: { rel: number; dev: number; len: number } | null = null;
  const flush = (): void => {
    if (!run) return;
    const r = run;
    run = null;
    runs++;
    if (zeros) ctx.io.begin(BlockOp.WriteZeroes, r.dev, r.len, 0, done);
    else {
      ctx.io.begin(BlockOp.Write, r.dev, r.len, 0, done);
      forSlice(segs, r.rel, r.rel + r.len, (id, off, len) => ctx.io.segment(id, off, len));
    }
  };
  for (const p of pieces) {
    const dev = p.entry.offset + p.inOff;
    if (run && run.rel + run.len === p.rel && run.dev + run.len === dev) run.len += p.len;
    else {
      flush();
      run = { rel: p.rel, dev, len: p.len };
    }
  }
  flush();
  return runs;
}

/**
 * Writes guest data (or zeros) to guest bytes [abs, abs + len), request bytes from `rel`,
 * allocating clusters where needed: the cluster's other bytes come from what the guest saw there
 * before (the old cluster, a compressed one, the backing file, or zeros), everything is written,
 * and only then does the L2 entry point to the new cluster.
 */
export async function writeRange(ctx: DriverCtx, req: Req, rel: number, abs: number, len: number, zeros: boolean): Promise<void> {
  const gcs: number[] = [];
  for (let gc = Math.floor(abs / ctx.cs); gc * ctx.cs < abs + len; gc++) gcs.push(gc);
  const unlockClusters = await ctx.clusterLocks.lock(gcs);
  try {
    const pieces = await loadPieces(ctx, rel, abs, len);
    const inPlace: Piece[] = [];
    const alloc: Piece[] = [];
    for (const p of pieces) {
      if (p.entry.invalid) throw new SpindleError('IO_ERROR', `the L2 entry of guest cluster ${p.gc} is damaged`);
      // Locked by this very write: inPlace() would see the lock.
      const e = p.entry;
      const ok = p.table !== null && e.kind === 'normal' && e.copied && ctx.image.l1Entry(p.l1i).copied && hostOk(ctx, e.offset, ctx.cs);
      if (ok && ctx.image.isMetadata(e.offset / ctx.cs))
        throw new SpindleError(
          'IO_ERROR',
          `guest cluster ${p.gc} points into the image's own metadata at ${e.offset}; the write is refused`,
        );
      (ok ? inPlace : alloc).push(p);
    }
    const writes: Promise<void>[] = [];
    if (inPlace.length) {
      writes.push(
        new Promise<void>((resolve, reject) => {
          let left = 0;
          let failed = 0;
          const done = (res: number): void => {
            if (res < 0 && !failed) failed = res;
            if (--left > 0) return;
            if (failed) reject(new SpindleError(failed === -28 ? 'NO_SPACE' : 'IO_ERROR', `write failed (${failed})`));
            else resolve();
          };
          left = emitInPlace(ctx, req.segs, inPlace, zeros, done);
        }),
      );
      ctx.count(FORMAT_SLOT.inPlaceWrites);
    }
    if (alloc.length) {
      ctx.count(FORMAT_SLOT.allocatingWrites);
      writes.push(allocate(ctx, req, alloc, zeros));
    }
    ctx.io.submit();
    const results = await Promise.allSettled(writes);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  } finally {
    unlockClusters();
  }
}
