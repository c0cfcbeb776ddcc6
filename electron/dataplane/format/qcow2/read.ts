// The qcow2 read path: a guest read becomes reads of the image file or of the backing image on
// the guest's own memory (merged where contiguous on both sides), zeros filled in place, and
// compressed clusters decompressed into it.
import { SpindleError } from '../../../shared/errors.js';
import { BlockOp } from '../../block/types.js';
import type { Lower } from './lower.js';
import { decompressCluster } from './compressed.js';
import type { L2Entry } from './entries.js';
import { hostOk, loadPieces, pieces, singleClusterFastPath, type Piece } from './pieces.js';
import { EIO, type DriverCtx, type Req } from './request.js';
import { copyIntoSlice, forSlice, zeroSlice } from './segments.js';

/** Issues the read when every L2 table it needs is cached; false (nothing done) otherwise. */
export function tryRead(ctx: DriverCtx, req: Req): boolean {
  // Most guest reads lie inside one allocated cluster: one host read on the guest's own segments.
  if (singleClusterFastPath(ctx, req, BlockOp.Read)) return true;
  const p = pieces(ctx, 0, req.offset, req.length);
  if (!p) return false;
  emitRead(ctx, req, p);
  ctx.part(req, 0);
  return true;
}

/** The read once its L2 tables are loaded. */
export async function slowRead(ctx: DriverCtx, req: Req): Promise<void> {
  req.pending++;
  try {
    const p = await loadPieces(ctx, 0, req.offset, req.length);
    emitRead(ctx, req, p);
    ctx.io.submit();
    ctx.backing?.io.submit();
  } finally {
    ctx.part(req, 0);
  }
}

function emitRead(ctx: DriverCtx, req: Req, pieces: Piece[]): void {
  let run: { lower: Lower; rel: number; dev: number; len: number } | null = null;
  const flush = (): void => {
    if (!run) return;
    const r = run;
    run = null;
    req.pending++;
    r.lower.begin(BlockOp.Read, r.dev, r.len, 0, (res) => ctx.part(req, res));
    forSlice(req.segs, r.rel, r.rel + r.len, (id, off, len) => r.lower.segment(id, off, len));
  };
  const add = (lower: Lower, rel: number, dev: number, len: number): void => {
    if (run && run.lower === lower && run.rel + run.len === rel && run.dev + run.len === dev) run.len += len;
    else {
      flush();
      run = { lower, rel, dev, len };
    }
  };
  for (const p of pieces) {
    const e = p.entry;
    if (e.invalid) {
      ctx.log(`${ctx.path}: the L2 entry of guest cluster ${p.gc} is damaged; the read fails.`);
      req.result = EIO;
      continue;
    }
    switch (e.kind) {
      case 'normal': {
        const host = e.offset + p.inOff;
        if (!hostOk(ctx, e.offset, ctx.cs)) {
          ctx.log(`${ctx.path}: guest cluster ${p.gc} points outside the image (${e.offset}); the read fails.`);
          req.result = EIO;
        } else add(ctx.io, p.rel, host, p.len);
        break;
      }
      case 'zero':
        zeroSlice(ctx.buffers, req.segs, p.rel, p.rel + p.len);
        break;
      case 'unallocated': {
        const g = p.gc * ctx.cs + p.inOff;
        const b = ctx.backing;
        const from = b ? Math.max(0, Math.min(p.len, b.sizeBytes - g)) : 0;
        if (from > 0) add(b!.io, p.rel, g, from);
        if (from < p.len) zeroSlice(ctx.buffers, req.segs, p.rel + from, p.rel + p.len);
        break;
      }
      case 'compressed':
        req.pending++;
        readCompressed(ctx, e).then(
          (data) => {
            copyIntoSlice(ctx.buffers, req.segs, p.rel, data.subarray(p.inOff, p.inOff + p.len));
            ctx.part(req, 0);
          },
          (err: unknown) => {
            ctx.log(`${ctx.path}: guest cluster ${p.gc}: ${(err as Error).message}`);
            ctx.part(req, EIO);
          },
        );
        break;
    }
  }
  flush();
}

/** The whole cluster behind compressed entry `e`, decompressed (reads and copy-on-write). */
export async function readCompressed(ctx: DriverCtx, e: L2Entry): Promise<Buffer> {
  if (e.offset < ctx.cs || e.offset >= ctx.image.refs.fileEnd)
    throw new SpindleError('IO_ERROR', `a compressed cluster at ${e.offset} lies outside the image`);
  const len = Math.min(e.compressedBytes, ctx.image.refs.fileEnd - e.offset);
  const raw = await ctx.io.read(e.offset, len);
  return decompressCluster(raw, ctx.cs, ctx.image.h.compressionType);
}
