// Discard and write-zeroes: whole clusters only change their L2 entries (unallocated, or the
// zero flag where a backing file must stay hidden); the rest (write-zeroes only) is written as
// zeros through the write path.
import { BlockOp } from '../../block/types.js';
import type { DriverCtx, Req } from './request.js';
import { writeRange } from './write.js';

export async function zeroOrDiscard(ctx: DriverCtx, req: Req): Promise<void> {
  const img = ctx.image;
  const zeroes = req.op === BlockOp.WriteZeroes;
  // What a whole cluster becomes: unallocated (reads zeros without a backing file), the zero
  // flag (v3, hides the backing file), or nothing fits (v2 over a backing file).
  const target: 'unallocated' | 'zero' | null = !ctx.backing ? 'unallocated' : img.h.version === 3 ? 'zero' : null;
  const whole: number[] = [];
  const partial: { rel: number; abs: number; len: number }[] = [];
  const end = req.offset + req.length;
  for (let pos = req.offset; pos < end;) {
    const inOff = pos % ctx.cs;
    const n = Math.min(ctx.cs - inOff, end - pos);
    const full = inOff === 0 && (n === ctx.cs || pos + n >= ctx.sizeBytes());
    if (full && target) whole.push(Math.floor(pos / ctx.cs));
    else if (zeroes) {
      const last = partial[partial.length - 1];
      if (last && last.abs + last.len === pos) last.len += n;
      else partial.push({ rel: pos - req.offset, abs: pos, len: n });
    }
    pos += n;
  }
  if (whole.length) {
    const unlockClusters = await ctx.clusterLocks.lock(whole);
    try {
      for (const gc of whole) await img.loadL2(Math.floor(gc / img.l2Entries));
      const unlock = await img.lock.lock();
      try {
        for (const gc of whole) {
          const l1i = Math.floor(gc / img.l2Entries);
          const l2i = gc % img.l2Entries;
          if (!img.l1Entry(l1i).offset && target === 'unallocated') continue;
          const old = img.entry(await img.loadL2(l1i), l2i);
          if (old.kind === 'unallocated' && target === 'unallocated') continue;
          if (old.kind === 'zero' && !old.offset && target === 'zero') continue;
          const t = await img.writableL2(l1i);
          img.setEntry(t, l2i, 0, target === 'zero');
        }
      } finally {
        unlock();
      }
    } finally {
      unlockClusters();
    }
  }
  for (const r of partial) await writeRange(ctx, req, r.rel, r.abs, r.len, true);
  await ctx.afterAllocation();
}
