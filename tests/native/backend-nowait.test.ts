// RWF_NOWAIT on a loop-mounted ext4: sparse files bounce to the pool and still read back exact,
// written/fallocated files do not bounce, block devices keep nowait off, auto on a sparse file is
// allocation-aware (extent-map.test.ts has the details), and a live reconfigure under load loses
// nothing.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import type { NowaitEvent } from '../../electron/dataplane/block/nowait-policy.js';
import { attachLoop, makeFile, mountFs, tempDir } from '../lib/loop.js';
import { Completions, OPS, pattern, rng } from './engine-helpers.js';

const SIZE = 32 << 20;

/** 4k writes at random distinct offsets, in batches of 32; returns what was written where. */
async function randomWrites(b: BlockBackend, n: number, seed: number): Promise<Map<number, Buffer>> {
  const random = rng(seed);
  const written = new Map<number, Buffer>();
  const blocks = SIZE / 4096;
  while (written.size < n) {
    const batch: Array<Promise<void>> = [];
    for (let i = 0; i < 32 && written.size < n; i++) {
      const off = Math.floor(random() * blocks) * 4096;
      if (written.has(off)) continue;
      const data = pattern(4096, off + seed);
      written.set(off, data);
      batch.push(b.write(off, data));
    }
    await Promise.all(batch);
  }
  return written;
}

async function verify(b: BlockBackend, written: Map<number, Buffer>): Promise<void> {
  for (const [off, data] of written) assert.ok((await b.read(off, 4096)).equals(data), `4k at ${off} reads back byte-exact`);
}

test('nowait on ext4: sparse writes fall back and read back exact; written and fallocated files do not', async (t) => {
  const fs = mountFs('ext4', 256, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  for (const aio of ['native', 'io_uring'] as const) {
    const sparse = makeFile(`${fs.mountpoint}/sparse-${aio}.img`, SIZE);
    const b = await BlockBackend.open(sparse, { aio, cache: 'none', nowait: 'on' });
    try {
      const written = await randomWrites(b, 512, 1);
      const s = b.counters.snapshot();
      assert.ok(s.nowait.writeSubmitted >= 512);
      assert.ok(s.nowait.writeFallbacks > 0, `${aio}: writes into holes bounced (${s.nowait.writeFallbacks})`);
      await verify(b, written);
    } finally {
      await b.close();
    }
    for (const prepared of ['written', 'fallocated'] as const) {
      const path = `${fs.mountpoint}/${prepared}-${aio}.img`;
      // Written with O_DIRECT: pages left in the host page cache would make nowait bounce too.
      if (prepared === 'written') execFileSync('dd', ['if=/dev/zero', `of=${path}`, 'bs=1M', `count=${SIZE >> 20}`, 'oflag=direct', 'status=none']);
      else execFileSync('fallocate', ['-l', String(SIZE), path]);
      const w = await BlockBackend.open(path, { aio, cache: 'none', nowait: 'on' });
      try {
        const data = await randomWrites(w, 512, 2);
        const s = w.counters.snapshot();
        assert.ok(s.nowait.writeSubmitted >= 512);
        if (prepared === 'written') {
          assert.equal(s.nowait.writeFallbacks, 0, `${aio}: a written file never bounces`);
        } else {
          // Measured on 6.x ext4: writes converting unwritten extents occasionally bounce (inode
          // lock taken exclusively), a handful in 512; a sparse file bounces on most writes.
          assert.ok(s.nowait.writeFallbacks < 512 * 0.05, `${aio}: a fallocated file rarely bounces (${s.nowait.writeFallbacks}/512)`);
        }
        await verify(w, data);
      } finally {
        await w.close();
      }
    }
  }
});

test('a block device keeps nowait off under auto', async (t) => {
  const dir = tempDir('spindle-nowait-', '/var/tmp');
  const loop = attachLoop(makeFile(`${dir.path}/b.img`, SIZE));
  t.after(() => { loop.detach(); dir.cleanup(); });
  const b = await BlockBackend.open(loop.device, { aio: 'native', cache: 'none', nowait: 'auto' });
  try {
    assert.deepEqual(b.currentModes.nowaitActive, { read: false, write: false });
    await randomWrites(b, 64, 3);
    assert.equal(b.counters.snapshot().nowait.writeSubmitted, 0);
  } finally {
    await b.close();
  }
});

test('auto: a sparse file is served allocation-aware: writes stop bouncing once their chunk is allocated, nowait stays on', async (t) => {
  const fs = mountFs('ext4', 128, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const path = makeFile(`${fs.mountpoint}/auto.img`, SIZE);
  const b = await BlockBackend.open(path, {
    aio: 'native', cache: 'none', nowait: 'auto',
    nowaitPolicy: { windowRequests: 256, maxFallbackRatio: 0.2, probeAfterRequests: 512, probeAfterMs: 3_600_000 },
  });
  try {
    const events: NowaitEvent[] = [];
    b.on('nowait', (e: NowaitEvent) => events.push(e));
    assert.equal(b.currentModes.nowaitActive.write, true);
    const written = await randomWrites(b, 2400, 4);
    const s = b.counters.snapshot();
    // 32 chunks of 1 MiB: each hole is allocated by the pool once (a few more when writes into
    // the same new chunk are in flight together); everything else went to Linux AIO.
    assert.ok(s.allocation.poolWrites > 0 && s.allocation.poolWrites < 400, `pool writes ${s.allocation.poolWrites}`);
    assert.ok(s.nowait.writeSubmitted > 2000, `native writes ${s.nowait.writeSubmitted}`);
    assert.ok(s.nowait.writeFallbacks < 2400 * 0.05, `bounces ${s.nowait.writeFallbacks}`);
    assert.equal(events.filter((e) => e.direction === 'write').length, 0, 'the policy had nothing to switch off');
    await verify(b, written);
  } finally {
    await b.close();
  }
});

test('reconfigure under load (aio, cache, nowait) loses nothing', async (t) => {
  const dir = tempDir('spindle-reconf-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/r.img`, SIZE);
  const b = await BlockBackend.open(path, { aio: 'threads', cache: 'writeback' });
  t.after(() => b.close());
  const done = new Completions(b);
  const mem = new Uint8Array(SIZE);
  mem.set(pattern(SIZE, 77));
  b.registerBuffer(1, mem);
  const results: Array<Promise<number>> = [];
  let tag = 0;
  const load = (async () => {
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 64; i++) {
        const off = ((round * 64 + i) % (SIZE / 4096)) * 4096;
        b.begin(tag, OPS.Write, off);
        b.segment(1, off, 4096);
        results.push(done.expect(tag++));
      }
      b.submit();
      await new Promise((r) => setImmediate(r));
    }
  })();
  const steps = [
    { aio: 'native', cache: 'none', nowait: 'on' },
    { aio: 'io_uring', cache: 'writethrough' },
    { aio: 'native', cache: 'directsync', nowait: 'auto' },
    { nowait: 'off' },
    { aio: 'threads', cache: 'unsafe' },
  ] as const;
  for (const step of steps) {
    await b.reconfigure(step);
    await new Promise((r) => setTimeout(r, 5));
  }
  await assert.rejects(b.reconfigure({ aio: 'native', cache: 'writeback' }), /needs cache 'none' or 'directsync'/);
  await load;
  const r = await Promise.all(results);
  assert.equal(r.length, 40 * 64);
  assert.ok(r.every((x) => x === 0), 'no request failed across the switches');
  assert.equal(done.duplicates, 0);
  assert.deepEqual({ aio: b.currentModes.aio, cache: b.currentModes.cache }, { aio: 'threads', cache: 'unsafe' });
  const back = await b.read(0, 40 * 64 * 4096);
  assert.ok(back.equals(mem.subarray(0, 40 * 64 * 4096)), 'every write landed');
});
