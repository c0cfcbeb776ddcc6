// io_uring's setup: coop-taskrun by default (defer-taskrun lost completions: uring-no-stall.test.ts),
// single-issuer + defer-taskrun when asked, falling back to coop-taskrun and then plain when a flag is refused
// (the fallback order itself is unit-tested in native/engine/test/uring_setup_test.cc with a
// refusing setup call); the file registered as a fixed file; guest-RAM-sized buffers pinned as
// fixed buffers when asked. Each setup serves the same I/O correctly, on a file and on a block
// device that a live switch reopens O_EXCL right away.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { attachLoop, makeFile, tempDir } from '../lib/loop.js';
import { Completions, OPS, pattern } from './engine-helpers.js';

const SIZE = 8 << 20;

async function exercise(b: BlockBackend, seed: number): Promise<void> {
  const offsets = Array.from({ length: 64 }, (_, i) => ((i * 37) % (SIZE / 4096)) * 4096);
  await Promise.all(offsets.map((off) => b.write(off, pattern(4096, off + seed))));
  await b.flush();
  const back = await Promise.all(offsets.map((off) => b.read(off, 4096)));
  back.forEach((buf, i) => assert.ok(buf.equals(pattern(4096, offsets[i]! + seed)), `4k at ${offsets[i]} exact`));
}

test('io_uring takes coop-taskrun by default, defer or plain when asked to start there, and a fixed file', async (t) => {
  const dir = tempDir('spindle-uring-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/u.img`, SIZE);
  const expected = {
    default: /^coop-taskrun\+fixed-file$/,
    defer: /^single-issuer\+defer-taskrun\+fixed-file$/,
    coop: /^coop-taskrun\+fixed-file$/,
    plain: /^plain\+fixed-file$/,
  };
  for (const [setup, re] of Object.entries(expected) as ['default' | 'defer' | 'coop' | 'plain', RegExp][]) {
    for (const cache of ['none', 'writeback'] as const) {
      const b = await BlockBackend.open(path, { aio: 'io_uring', cache, ...(setup === 'default' ? {} : { uringSetup: setup }) });
      try {
        assert.match(b.engineFeatures, re, `${setup}/${cache}`);
        await exercise(b, setup.length + cache.length);
      } finally {
        await b.close();
      }
    }
  }
});

test('a block device served by io_uring with a fixed file can be reopened at once (live switch)', async (t) => {
  const dir = tempDir('spindle-uring-', '/var/tmp');
  const loop = attachLoop(makeFile(`${dir.path}/b.img`, SIZE));
  t.after(() => {
    loop.detach();
    dir.cleanup();
  });
  const b = await BlockBackend.open(loop.device, { aio: 'io_uring', cache: 'none' });
  try {
    for (const step of [{ aio: 'native' as const }, { aio: 'io_uring' as const }, { cache: 'directsync' as const }, { aio: 'threads' as const }]) {
      await b.reconfigure(step);
      await exercise(b, 3);
    }
  } finally {
    await b.close();
  }
});

test('fixed buffers: a large registered buffer is pinned once and serves reads and writes; unregistering it in flight is safe', async (t) => {
  const dir = tempDir('spindle-uring-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/f.img`, SIZE);
  for (const cache of ['none', 'writeback'] as const) {
    const b = await BlockBackend.open(path, { aio: 'io_uring', cache, fixedBuffers: true });
    try {
      const done = new Completions(b);
      assert.doesNotMatch(b.engineFeatures, /fixed-buffers/, 'nothing pinned before a buffer is registered');
      const ram = new Uint8Array(4 << 20); // like a guest RAM region
      ram.set(pattern(4 << 20, 11));
      b.registerBuffer(1, ram);
      assert.match(b.engineFeatures, /fixed-buffers/);
      const writes: Promise<number>[] = [];
      for (let i = 0; i < 256; i++) {
        b.begin(i, OPS.Write, i * 4096);
        b.segment(1, i * 4096, 4096); // one segment: a fixed write
        writes.push(done.expect(i));
      }
      b.begin(256, OPS.Write, 256 * 4096);
      b.segment(1, 0, 2048); // two segments: writev, beside the fixed ones
      b.segment(1, 8192, 2048);
      writes.push(done.expect(256));
      b.submit();
      assert.deepEqual(new Set(await Promise.all(writes)), new Set([0]));
      const back = await b.read(0, 256 * 4096);
      assert.ok(back.equals(ram.subarray(0, 256 * 4096)), `${cache}: fixed writes landed`);
      const two = await b.read(256 * 4096, 4096);
      assert.ok(two.subarray(0, 2048).equals(ram.subarray(0, 2048)) && two.subarray(2048).equals(ram.subarray(8192, 10240)));

      const into = new Uint8Array(4 << 20);
      b.registerBuffer(2, into);
      const reads: Promise<number>[] = [];
      for (let i = 0; i < 64; i++) {
        b.begin(1000 + i, OPS.Read, i * 4096);
        b.segment(2, i * 4096, 4096);
        reads.push(done.expect(1000 + i));
      }
      b.submit();
      b.unregisterBuffer(2); // in flight: the engine keeps it until they finish
      assert.deepEqual(new Set(await Promise.all(reads)), new Set([0]));
      assert.ok(Buffer.from(into.subarray(0, 64 * 4096)).equals(ram.subarray(0, 64 * 4096)), `${cache}: fixed reads exact`);
      b.unregisterBuffer(1);
      assert.ok((await b.read(0, 4096)).equals(ram.subarray(0, 4096)), 'I/O goes on after the fixed buffers are gone');
    } finally {
      await b.close();
    }
  }
});
