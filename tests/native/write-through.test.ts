// Write-through when the guest turns its write cache off (virtio-blk CONFIG_WCE): every write is
// durable before it completes. Real files, every engine; the counters show the fdatasyncs the
// engine added, and each completion batch of writes arrives only after its flush finished.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { closeSync, constants, openSync } from 'node:fs';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import type { AioMode, CacheMode } from '../../electron/shared/modes.js';
import { DiskCounters } from '../../electron/dataplane/block/stats.js';
import { AioEngine, REQUEST_FLAG_FUA, SubmissionQueue } from '../../electron/dataplane/block/engine.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { OPS, pattern } from './engine-helpers.js';
import { within } from '../lib/wait.js';

const WRITES = 24;
const IO = 64 << 10;

interface Run {
  results: number[];
  /** flush.ops seen by each completion batch that carried writes, in order. */
  flushesAtBatch: number[];
  flushes: number;
  flushErrors: number;
}

/** One batch of WRITES writes (plus a write-zeroes) through the zero-copy API, then all read back. */
async function writeBatch(b: BlockBackend, seed: number): Promise<Run> {
  const mem = new Uint8Array(WRITES * IO);
  const data = pattern(WRITES * IO, seed);
  mem.set(data);
  b.registerBuffer(7, mem);
  const flush0 = b.counters.snapshot().flush.ops;
  const run: Run = { results: [], flushesAtBatch: [], flushes: 0, flushErrors: 0 };
  const all = new Promise<void>((resolve) => {
    b.onComplete = (tags, results, count) => {
      for (let i = 0; i < count; i++) run.results[tags[i]!] = results[i]!;
      run.flushesAtBatch.push(b.counters.snapshot().flush.ops - flush0);
      if (run.results.filter((r) => r !== undefined).length === WRITES + 1) resolve();
    };
    for (let i = 0; i < WRITES; i++) {
      b.begin(i, OPS.Write, i * IO);
      b.segment(7, i * IO, IO);
    }
    b.begin(WRITES, OPS.WriteZeroes, WRITES * IO, IO);
    b.submit();
  });
  await within(all, { timeoutMs: 60_000, what: `${WRITES + 1} write-through completions`, detail: () => `${run.results.filter((r) => r !== undefined).length} arrived` });
  b.onComplete = null;
  b.unregisterBuffer(7);
  const s = b.counters.snapshot().flush;
  run.flushes = s.ops - flush0;
  run.flushErrors = s.errors;
  const back = await b.read(0, WRITES * IO + IO);
  assert.ok(back.subarray(0, WRITES * IO).equals(data), 'the writes read back');
  assert.ok(back.subarray(WRITES * IO).every((x) => x === 0), 'the write-zeroes reads back as zeros');
  return run;
}

const CASES: Array<[AioMode, CacheMode]> = [['threads', 'writeback'], ['native', 'none'], ['io_uring', 'writeback'], ['io_uring', 'none']];

for (const [aio, cache] of CASES) {
  test(`${aio}/${cache}: with WCE off every completion batch of writes waits for one fdatasync; with WCE on none is added`, async (t) => {
    const dir = tempDir('spindle-wt-', '/var/tmp');
    t.after(() => dir.cleanup());
    const path = makeFile(`${dir.path}/disk.img`, 4 << 20);
    const b = await BlockBackend.open(path, { aio, cache, nowait: 'off' });
    try {
      assert.equal(b.writeCache, true);
      const on = await writeBatch(b, 1);
      assert.deepEqual(on.results, new Array(WRITES + 1).fill(0));
      assert.equal(on.flushes, 0, 'WCE on: the engine adds no flush');

      b.writeCache = false;  // what VirtioBlkDevice.writeConfig does when the guest clears WCE
      const off = await writeBatch(b, 2);
      assert.deepEqual(off.results, new Array(WRITES + 1).fill(0));
      assert.ok(off.flushes >= 1, 'WCE off: at least one fdatasync');
      assert.ok(off.flushes < WRITES + 1, `WCE off: flushes are shared by writes, not one each (${off.flushes} for ${WRITES + 1})`);
      // Every batch that delivered writes did so after a flush of its own had completed.
      off.flushesAtBatch.forEach((f, i) => assert.equal(f, i + 1, `batch ${i} was delivered after flush ${i + 1}`));
      assert.equal(off.flushes, off.flushesAtBatch.length, 'one flush per completion batch of writes');
      assert.equal(off.flushErrors, 0);

      b.writeCache = true;
      const again = await writeBatch(b, 3);
      assert.equal(again.flushes, 0, 'WCE back on: no flush added');
    } finally {
      await b.close();
    }
  });
}

test('WCE off adds no flush where writes are durable already (writethrough, directsync) nor under cache unsafe', async (t) => {
  const dir = tempDir('spindle-wt-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/disk.img`, 4 << 20);
  for (const [aio, cache] of [['threads', 'writethrough'], ['native', 'directsync'], ['threads', 'unsafe']] as const) {
    const b = await BlockBackend.open(path, { aio, cache });
    try {
      b.writeCache = false;
      const run = await writeBatch(b, 4);
      assert.deepEqual(run.results, new Array(WRITES + 1).fill(0), `${aio}/${cache}`);
      assert.equal(run.flushes, 0, `${aio}/${cache}: no flush added`);
    } finally {
      await b.close();
    }
  }
});

test('the guest\'s WCE choice survives a live cache switch: off stays write-through under writeback', async (t) => {
  const dir = tempDir('spindle-wt-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/disk.img`, 4 << 20);
  const b = await BlockBackend.open(path, { aio: 'threads', cache: 'writethrough' });
  try {
    assert.equal(b.writeCache, false, 'writethrough: the guest sees no cache');
    await b.reconfigure({ cache: 'writeback' });
    assert.equal(b.writeCache, false);
    const run = await writeBatch(b, 5);
    assert.ok(run.flushes >= 1, 'writes under writeback are flushed for a guest told there is no cache');
  } finally {
    await b.close();
  }
});

test('a failing flush fails the writes it covers with its errno (/dev/null: writes work, fdatasync is EINVAL)', async () => {
  for (const kind of ['threads', 'io_uring'] as const) {
    const fd = openSync('/dev/null', constants.O_RDWR);
    try {
      const counters = new DiskCounters();
      const results: number[] = [];
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      const e = new AioEngine({
        kind, fd, isBlock: false, alignment: 512, counters: counters.slots,
        onComplete: (tags, res, n) => {
          for (let i = 0; i < n; i++) results[tags[i]!] = res[i]!;
          if (results.filter((x) => x !== undefined).length === 5) resolve();
        },
      });
      e.registerBuffer(1, new Uint8Array(4096));
      const q = new SubmissionQueue();
      for (let i = 0; i < 4; i++) {
        q.begin(i, OPS.Write, i * 512, 0, REQUEST_FLAG_FUA);
        q.segment(1, i * 512, 512);
      }
      q.begin(4, OPS.Write, 4096);  // not FUA: completes with the write's own result
      q.segment(1, 0, 512);
      e.submit(q);
      await done;
      await e.close();
      assert.deepEqual(results, [-22, -22, -22, -22, 0], `${kind}: FUA writes carry the flush's EINVAL`);
      const s = counters.snapshot();
      assert.ok(s.flush.errors >= 1, `${kind}: the failed flush is counted`);
      assert.equal(s.write.errors, 4);
    } finally {
      closeSync(fd);
    }
  }
});
