// Allocation-aware native (nowait 'auto' on an image file, native/engine/extent_map.h) on a real
// ext4: writes into holes go to the pool, which allocates a chunk around them, and the writes that
// follow into the chunk go to Linux AIO; discards and unmapping write-zeroes make holes again;
// fallocated ranges count as allocated; a hole punched behind Spindle's back is caught (counted,
// written by the pool without allocating ahead, data exact), never written natively as if safe.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { WRITE_ZEROES_MAY_UNMAP } from '../../electron/dataplane/block/types.js';
import { extents } from '../../electron/dataplane/native/os.js';
import { makeFile, mountFs } from '../lib/loop.js';
import { pattern } from './engine-helpers.js';

const MiB = 1 << 20;
const SIZE = 32 * MiB;

function mappedBytes(path: string): number {
  const fd = openSync(path, 'r');
  try {
    return extents(fd).mappedBytes;
  } finally {
    closeSync(fd);
  }
}

test('writes into holes allocate a chunk in the pool; the next writes there go native; discard and unmap make holes again', async (t) => {
  const fs = mountFs('ext4', 128, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const path = makeFile(`${fs.mountpoint}/sparse.img`, SIZE);
  const b = await BlockBackend.open(path, { aio: 'native', cache: 'none', nowait: 'auto' });
  try {
    assert.match(b.engineFeatures, /extent-map/, 'nowait auto with native on a file keeps an extent map');
    const alloc = () => b.counters.snapshot().allocation;
    const nowait = () => b.counters.snapshot().nowait;
    // Writes the map sent to the pool (holes). A write into an unwritten extent may bounce now
    // and then (ext4 converting it holds the inode lock): a miss, written by the pool as it is.
    const holes = () => alloc().poolWrites;

    await b.write(4096, pattern(4096, 1));
    assert.equal(alloc().poolWrites, 1, 'the write into a hole went to the pool');
    assert.equal(nowait().writeSubmitted, 0, 'and not to Linux AIO');
    assert.equal(mappedBytes(path), MiB, 'the pool allocated the 1 MiB chunk around it');

    const more = [0, 8192, MiB - 4096].map((off) => b.write(off, pattern(4096, off + 2)));
    await Promise.all(more);
    assert.equal(holes(), 1, 'writes into the allocated chunk were not sent to the pool');
    assert.equal(nowait().writeSubmitted, 3, 'they went to Linux AIO (with RWF_NOWAIT)');
    assert.equal(nowait().writeFallbacks, alloc().misses, 'a bounce is counted as a miss');

    await b.write(MiB, pattern(4096, 3)); // the next chunk is a hole
    assert.equal(holes(), 2);

    await b.discard(0, MiB);
    await b.write(8192, pattern(4096, 4));
    assert.equal(holes(), 3, 'a discarded range is a hole again: its write went to the pool');

    await b.writeZeroes(MiB, MiB, WRITE_ZEROES_MAY_UNMAP);
    await b.write(MiB + 4096, pattern(4096, 5));
    assert.equal(holes(), 4, 'unmapping write-zeroes made a hole too');

    await b.writeZeroes(4 * MiB, MiB); // zero-range allocates
    const submitted = nowait().writeSubmitted;
    await b.write(4 * MiB + 4096, pattern(4096, 6));
    assert.equal(holes(), 4, 'zeroed (allocated) range: not sent to the pool');
    assert.equal(nowait().writeSubmitted, submitted + 1);

    assert.ok((await b.read(8192, 4096)).equals(pattern(4096, 4)));
    assert.ok((await b.read(4096, 4096)).equals(Buffer.alloc(4096)), 'the discarded block reads as zeros');
    assert.ok((await b.read(MiB + 4096, 4096)).equals(pattern(4096, 5)));
    assert.ok((await b.read(4 * MiB + 4096, 4096)).equals(pattern(4096, 6)));
  } finally {
    await b.close();
  }
});

test('fallocated and written ranges count as allocated at open', async (t) => {
  const fs = mountFs('ext4', 128, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const path = makeFile(`${fs.mountpoint}/pre.img`, SIZE);
  execFileSync('fallocate', ['-o', String(2 * MiB), '-l', String(2 * MiB), '--keep-size', path]);
  execFileSync('dd', ['if=/dev/zero', `of=${path}`, 'bs=1M', 'seek=8', 'count=1', 'conv=notrunc', 'oflag=direct', 'status=none']);
  const b = await BlockBackend.open(path, { aio: 'native', cache: 'none', nowait: 'auto' });
  try {
    await Promise.all([2 * MiB, 4 * MiB - 4096, 8 * MiB, 9 * MiB - 4096].map((off) => b.write(off, pattern(4096, off))));
    const s = b.counters.snapshot();
    // (A write converting an unwritten extent may bounce now and then: a miss, not a hole.)
    assert.equal(s.allocation.poolWrites, 0, 'no write into a fallocated or written range was sent to the pool to allocate');
    assert.equal(s.nowait.writeSubmitted, 4);
    await b.write(16 * MiB, pattern(4096, 7));
    const a = b.counters.snapshot().allocation;
    assert.equal(a.poolWrites, 1, 'a hole at open is a hole');
  } finally {
    await b.close();
  }
});

test('a hole punched behind Spindle\'s back is caught: counted as a miss, written by the pool, data exact', async (t) => {
  const fs = mountFs('ext4', 128, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const path = makeFile(`${fs.mountpoint}/changed.img`, SIZE);
  execFileSync('dd', ['if=/dev/zero', `of=${path}`, 'bs=1M', `count=${SIZE / MiB}`, 'conv=notrunc', 'oflag=direct', 'status=none']);
  const b = await BlockBackend.open(path, { aio: 'native', cache: 'none', nowait: 'auto' });
  try {
    await b.write(0, pattern(4096, 8));
    assert.equal(b.counters.snapshot().allocation.poolWrites, 0, 'a written file: native');
    // Someone else (not Spindle) deallocates 1 MiB of the file while it is served.
    execFileSync('fallocate', ['--punch-hole', '-o', String(3 * MiB), '-l', String(MiB), path]);
    assert.equal(mappedBytes(path), SIZE - MiB, 'the hole is really there');
    const writes = [3 * MiB, 3 * MiB + 4096, 4 * MiB - 4096];
    const missesBefore = b.counters.snapshot().allocation.misses;
    for (const off of writes) await b.write(off, pattern(4096, off + 9));
    const s = b.counters.snapshot();
    // Each write into the hole bounced (a timestamp update may bounce another now and then).
    assert.ok(s.allocation.misses - missesBefore >= writes.length, `the stale map was noticed (${s.allocation.misses - missesBefore} miss(es))`);
    assert.equal(s.nowait.writeFallbacks, s.allocation.misses, 'each miss was written again by the pool');
    assert.equal(s.allocation.poolWrites, 0, 'a miss allocates nothing ahead');
    assert.equal(s.write.errors, 0);
    for (const off of writes) assert.ok((await b.read(off, 4096)).equals(pattern(4096, off + 9)), `4k at ${off} reads back exact`);
    assert.equal(mappedBytes(path), SIZE - MiB + writes.length * 4096, 'the pool allocated exactly the blocks it wrote');

  } finally {
    await b.close();
  }
});

test('a live switch to nowait auto loads the map; to on drops it', async (t) => {
  const fs = mountFs('ext4', 128, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const path = makeFile(`${fs.mountpoint}/switch.img`, SIZE);
  const b = await BlockBackend.open(path, { aio: 'native', cache: 'none', nowait: 'on' });
  try {
    assert.doesNotMatch(b.engineFeatures, /extent-map/);
    await b.reconfigure({ nowait: 'auto' });
    assert.match(b.engineFeatures, /extent-map/);
    await b.write(0, pattern(4096, 10));
    assert.equal(b.counters.snapshot().allocation.poolWrites, 1);
    await b.reconfigure({ nowait: 'on' });
    assert.doesNotMatch(b.engineFeatures, /extent-map/);
    assert.ok((await b.read(0, 4096)).equals(pattern(4096, 10)));
  } finally {
    await b.close();
  }
});
