// Allocating writes. Under the image lock the L2 tables are made writable and the new clusters
// counted (refcount 1); then the guest's bytes and the copy-on-write rest of each cluster are
// written into them; only then, under the lock again, do the L2 entries point to them: a reader
// sees the old mapping until the data is there, and the writeback (image.ts) puts refcounts on
// disk before the L2 tables that reference them. A failed write gives the clusters back.
import { SpindleError } from '../../../shared/errors.js';
import { BlockOp } from '../../block/types.js';
import { hostOk, type Piece } from './pieces.js';
import { readCompressed } from './read.js';
import type { DriverCtx, Req } from './request.js';
import { forSlice } from './segments.js';

/** Writes pieces `alloc` of `req` (guest data, or zeros) into newly allocated clusters. The
 *  caller holds their guest clusters (writeRange in write.ts). */
export async function allocate(ctx: DriverCtx, req: Req, alloc: Piece[], zeros: boolean): Promise<void> {
  const img = ctx.image;
  let hosts: number[];
  let unlock = await img.lock.lock();
  try {
    for (const p of alloc) await img.writableL2(p.l1i);
    hosts = await img.refs.allocate(alloc.length);
  } finally {
    unlock();
  }
  try {
    const writes: Promise<void>[] = [];
    const runs: { rel: number; host: number; len: number }[] = [];
    for (let i = 0; i < alloc.length; i++) {
      const p = alloc[i]!;
      const host = hosts[i]!;
      const tail = p.inOff + p.len;
      if (p.inOff > 0 || tail < ctx.cs) {
        const src = await before(ctx, p);
        const part = (from: number, to: number): void => {
          if (from >= to) return;
          writes.push(src ? ctx.io.write(host + from, src.subarray(from, to)) : ctx.io.writeZeroes(host + from, to - from));
        };
        part(0, p.inOff);
        part(tail, ctx.cs);
      }
      // The guest's bytes: one host request per run of pieces contiguous in the request and on the host.
      const prev = runs[runs.length - 1];
      if (prev && prev.rel + prev.len === p.rel && prev.host + prev.len === host + p.inOff) prev.len += p.len;
      else runs.push({ rel: p.rel, host: host + p.inOff, len: p.len });
    }
    for (const r of runs) {
      if (zeros) writes.push(ctx.io.writeZeroes(r.host, r.len));
      else
        writes.push(
          new Promise<void>((resolve, reject) => {
            ctx.io.begin(BlockOp.Write, r.host, r.len, 0, (res) =>
              res < 0 ? reject(new SpindleError(res === -28 ? 'NO_SPACE' : 'IO_ERROR', `allocating write failed (${res})`)) : resolve(),
            );
            forSlice(req.segs, r.rel, r.rel + r.len, (id, off, len) => ctx.io.segment(id, off, len));
          }),
        );
    }
    ctx.io.submit();
    const results = await Promise.allSettled(writes);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  } catch (err) {
    unlock = await img.lock.lock();
    try {
      await img.unallocate(hosts);
    } finally {
      unlock();
    }
    throw err;
  }
  unlock = await img.lock.lock();
  try {
    for (let i = 0; i < alloc.length; i++) {
      const p = alloc[i]!;
      const t = await img.writableL2(p.l1i);
      img.setEntry(t, p.l2i, hosts[i]!, false);
    }
  } finally {
    unlock();
  }
}

/** What the guest saw in a cluster before this write (null: zeros), for the bytes it keeps. */
async function before(ctx: DriverCtx, p: Piece): Promise<Buffer | null> {
  const e = p.entry;
  switch (e.kind) {
    case 'normal':
      if (!hostOk(ctx, e.offset, ctx.cs)) throw new SpindleError('IO_ERROR', `guest cluster ${p.gc} points outside the image`);
      return ctx.io.read(e.offset, ctx.cs);
    case 'compressed':
      return readCompressed(ctx, e);
    case 'zero':
      return null;
    case 'unallocated': {
      const b = ctx.backing;
      const g = p.gc * ctx.cs;
      if (!b || g >= b.sizeBytes) return null;
      const buf = Buffer.alloc(ctx.cs);
      await b.io.run(BlockOp.Read, g, Math.min(ctx.cs, b.sizeBytes - g), buf.subarray(0, Math.min(ctx.cs, b.sizeBytes - g)));
      return buf;
    }
  }
}
