// The thread pool under churn (native/engine/thread_pool.cc): batches handed over while workers
// time out and exit (idleMs 1) and new ones start, with a small and a large worker bound, mixed
// fast (page cache) and slow (fdatasync) requests: every request completes exactly once, the data
// is what a model of the writes says, and the workers' CPU time reaches the counters by close.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync } from 'node:fs';
import { AioEngine, SubmissionQueue } from '../../electron/dataplane/block/engine.js';
import { DiskCounters } from '../../electron/dataplane/block/stats.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { OPS, rng } from './engine-helpers.js';

const SIZE = 4 << 20;
const BLOCK = 4096;

test('workers exiting and starting between batches lose nothing and complete everything once', async (t) => {
  const dir = tempDir('spindle-pool-', '/var/tmp');
  t.after(() => dir.cleanup());
  for (const maxWorkers of [1, 3, 64]) {
    const path = makeFile(`${dir.path}/p${maxWorkers}.img`, SIZE);
    const fd = openSync(path, 'r+');
    const counters = new DiskCounters();
    const seen = new Map<number, number>();
    let failures = 0;
    let waiting: { until: number; resolve: () => void } | null = null;
    const engine = new AioEngine({
      kind: 'threads',
      fd,
      isBlock: false,
      alignment: 512,
      maxWorkers,
      idleMs: 1,
      fastPath: false, // every request through the pool
      counters: counters.slots,
      onComplete: (tags, results, count) => {
        for (let i = 0; i < count; i++) {
          seen.set(tags[i]!, (seen.get(tags[i]!) ?? 0) + 1);
          if (results[i] !== 0) failures++;
        }
        if (waiting && seen.size >= waiting.until) waiting.resolve();
      },
    });
    try {
      const model = new Uint8Array(SIZE);
      const mem = new Uint8Array(SIZE);
      engine.registerBuffer(1, mem);
      const q = new SubmissionQueue();
      const random = rng(maxWorkers);
      let tag = 0;
      for (let round = 0; round < 30; round++) {
        // Distinct blocks per batch: requests of one batch may run in any order.
        const used = new Set<number>();
        const n = 1 + Math.floor(random() * 48);
        for (let i = 0; i < n; i++) {
          const block = Math.floor(random() * (SIZE / BLOCK));
          if (used.has(block)) continue;
          used.add(block);
          const off = block * BLOCK;
          if (random() < 0.6) {
            mem.fill((round * 7 + i) & 0xff, off, off + BLOCK);
            model.fill((round * 7 + i) & 0xff, off, off + BLOCK);
            q.begin(tag++, OPS.Write, off);
          } else {
            q.begin(tag++, OPS.Read, off);
          }
          q.segment(1, off, BLOCK);
        }
        if (round % 5 === 0) q.begin(tag++, OPS.Flush, 0); // a slow one among them
        const until = tag;
        const done = new Promise<void>((resolve) => (waiting = { until, resolve }));
        engine.submit(q);
        const timer = setTimeout(() => waiting?.resolve(), 30_000);
        await done;
        clearTimeout(timer);
        assert.equal(seen.size, until, `round ${round}, ${maxWorkers} workers: every request completed within 30 s`);
        // Let the idle workers time out (idleMs 1) so the next batch starts new ones.
        if (round % 3 === 0) await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(failures, 0);
      assert.ok([...seen.values()].every((c) => c === 1), 'every request completed exactly once');
      const onDisk = Buffer.alloc(SIZE);
      readSync(fd, onDisk, 0, SIZE, 0);
      assert.ok(onDisk.equals(model), `${maxWorkers} workers: the file holds exactly the writes`);
    } finally {
      await engine.close();
      closeSync(fd);
    }
    assert.ok(counters.snapshot().cpu.poolNs > 0, `${maxWorkers} workers: the workers' CPU time was counted`);
  }
});
