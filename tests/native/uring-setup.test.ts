// io_uring's setup: the cheapest completion model the kernel accepts (single-issuer +
// defer-taskrun on 6.1+), falling back to coop-taskrun and then plain when a flag is refused
// (the fallback order itself is unit-tested in native/engine/test/uring_setup_test.cc with a
// refusing setup call); the file registered as a fixed file. Each setup serves the same I/O
// correctly, on a file and on a block device that a live switch reopens O_EXCL right away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { attachLoop, makeFile, tempDir } from '../lib/loop.js';
import { pattern } from './engine-helpers.js';

const SIZE = 8 << 20;

async function exercise(b: BlockBackend, seed: number): Promise<void> {
  const offsets = Array.from({ length: 64 }, (_, i) => ((i * 37) % (SIZE / 4096)) * 4096);
  await Promise.all(offsets.map((off) => b.write(off, pattern(4096, off + seed))));
  await b.flush();
  const back = await Promise.all(offsets.map((off) => b.read(off, 4096)));
  back.forEach((buf, i) => assert.ok(buf.equals(pattern(4096, offsets[i]! + seed)), `4k at ${offsets[i]} exact`));
}

test('io_uring takes defer-taskrun where the kernel has it, coop or plain when asked to start there, and a fixed file', async (t) => {
  const dir = tempDir('spindle-uring-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/u.img`, SIZE);
  const expected = { defer: /^single-issuer\+defer-taskrun\+fixed-file$/, coop: /^coop-taskrun\+fixed-file$/, plain: /^plain\+fixed-file$/ };
  for (const [setup, re] of Object.entries(expected) as ['defer' | 'coop' | 'plain', RegExp][]) {
    for (const cache of ['none', 'writeback'] as const) {
      const b = await BlockBackend.open(path, { aio: 'io_uring', cache, uringSetup: setup });
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
