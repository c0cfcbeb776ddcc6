// The threads engine's page-cache fast path (native/engine/core.cc TryInline) on real filesystems:
// a read of cached data is done inline (a hit); a read of data dropped from the page cache
// (POSIX_FADV_DONTNEED, through dd oflag=nocache) would block, so it goes to the pool (a punt) and
// reads back exact; xfs takes buffered RWF_NOWAIT writes inline, ext4 refuses them (EOPNOTSUPP on
// 6.x) and every write punts; writethrough never writes inline; O_DIRECT and fastPath: false never
// try. Every request is counted once, as a hit or a punt.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { mountFs, tempDir } from '../lib/loop.js';
import { pattern } from './engine-helpers.js';

const MiB = 1 << 20;
const SIZE = 16 * MiB;
// Far from offset 0, which opening the disk reads (format detection) and so brings into the cache.
const COLD = 8 * MiB;

/** A written, synced file whose pages are then dropped from the page cache. */
function coldFile(path: string): string {
  const fd = openSync(path, 'w');
  try {
    for (let off = 0; off < SIZE; off += MiB) writeSync(fd, pattern(MiB, off), 0, MiB, off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  dropCache(path);
  return path;
}

// coreutils' documented way to drop a file's cache: POSIX_FADV_DONTNEED over the whole file.
const dropCache = (path: string): void => {
  execFileSync('dd', ['if=/dev/null', `of=${path}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none']);
};

test('writeback on ext4: a cold read punts to the pool, the same read again is an inline hit; writes are counted once each', async (t) => {
  const dir = tempDir('spindle-fastpath-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = coldFile(`${dir.path}/disk.img`);
  const b = await BlockBackend.open(path, { aio: 'threads', cache: 'writeback' });
  try {
    const fp = () => b.counters.snapshot().fastPath;
    assert.ok((await b.read(COLD, 4096)).equals(pattern(MiB, COLD).subarray(0, 4096)), 'the cold read reads back exact');
    assert.deepEqual(fp(), { readHits: 0, readPunts: 1, writeHits: 0, writePunts: 0 }, 'uncached: punted');
    assert.ok((await b.read(COLD, 4096)).equals(pattern(MiB, COLD).subarray(0, 4096)));
    assert.deepEqual(fp(), { readHits: 1, readPunts: 1, writeHits: 0, writePunts: 0 }, 'now cached: a hit');

    const reads = await Promise.all(Array.from({ length: 32 }, (_, i) => b.read(COLD + i * 4096, 4096)));
    reads.forEach((r, i) => assert.ok(r.equals(pattern(MiB, COLD).subarray(i * 4096, (i + 1) * 4096)), `read ${i} exact`));
    const s = fp();
    assert.equal(s.readHits + s.readPunts, 34, 'every read counted once, as a hit or a punt');

    for (let i = 0; i < 8; i++) await b.write(i * 4096, pattern(4096, i));
    const w = fp();
    assert.equal(w.writeHits + w.writePunts, 8, 'every write counted once');
    for (let i = 0; i < 8; i++) assert.ok((await b.read(i * 4096, 4096)).equals(pattern(4096, i)));
    assert.equal(b.counters.snapshot().read.errors + b.counters.snapshot().write.errors, 0);
  } finally {
    await b.close();
  }
});

test('writeback on xfs: writes to cached pages are inline hits and land', async (t) => {
  const fs = mountFs('xfs', 300, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const path = coldFile(`${fs.mountpoint}/disk.img`);
  const b = await BlockBackend.open(path, { aio: 'threads', cache: 'writeback' });
  try {
    await b.read(COLD, 64 * 1024); // brings the range into the page cache (a punt)
    for (let i = 0; i < 16; i++) await b.write(COLD + i * 4096, pattern(4096, 100 + i));
    const s = b.counters.snapshot().fastPath;
    assert.ok(s.writeHits >= 1, `buffered writes went inline on xfs (${JSON.stringify(s)})`);
    assert.equal(s.writeHits + s.writePunts, 16);
    await b.flush();
    dropCache(path);
    for (let i = 0; i < 16; i++) assert.ok((await b.read(COLD + i * 4096, 4096)).equals(pattern(4096, 100 + i)), `write ${i} is on disk`);
  } finally {
    await b.close();
  }
});

test('writethrough reads inline but never writes inline; none and fastPath: false never try', async (t) => {
  const dir = tempDir('spindle-fastpath-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = coldFile(`${dir.path}/disk.img`);
  const wt = await BlockBackend.open(path, { aio: 'threads', cache: 'writethrough' });
  try {
    await wt.read(COLD, 4096);
    await wt.read(COLD, 4096);
    await wt.write(COLD, pattern(4096, 5));
    assert.deepEqual(wt.counters.snapshot().fastPath, { readHits: 1, readPunts: 1, writeHits: 0, writePunts: 0 });
    assert.ok((await wt.read(COLD, 4096)).equals(pattern(4096, 5)));
  } finally {
    await wt.close();
  }
  for (const o of [{ cache: 'none' as const }, { cache: 'writeback' as const, fastPath: false }]) {
    const b = await BlockBackend.open(path, { aio: 'threads', ...o });
    try {
      await b.read(COLD, 4096);
      await b.read(COLD, 4096);
      await b.write(COLD, pattern(4096, 6));
      assert.deepEqual(b.counters.snapshot().fastPath, { readHits: 0, readPunts: 0, writeHits: 0, writePunts: 0 }, JSON.stringify(o));
    } finally {
      await b.close();
    }
  }
});
