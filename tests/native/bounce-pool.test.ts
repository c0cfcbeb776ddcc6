// O_DIRECT with misaligned guest memory bounces through aligned buffers: the engine takes them
// from a small pool instead of allocating per request, and still allocates (and frees) the rare
// request too big to pool. Real O_DIRECT file, every engine.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { closeSync, constants, openSync } from 'node:fs';
import { AIO_MODES } from '../../electron/shared/modes.js';
import { AioEngine, SubmissionQueue } from '../../electron/dataplane/block/engine.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { OPS, pattern } from './engine-helpers.js';

const BATCH = 16;
const ROUNDS = 20;
const IO = 4096;

for (const kind of AIO_MODES) {
  test(`${kind}: misaligned O_DIRECT requests reuse pooled bounce buffers; big ones are allocated`, async (t) => {
    const dir = tempDir('spindle-bounce-', '/var/tmp');
    t.after(() => dir.cleanup());
    const path = makeFile(`${dir.path}/disk.img`, 8 << 20);
    const fd = openSync(path, constants.O_RDWR | constants.O_DIRECT);
    let pending = 0;
    let wake: (() => void) | null = null;
    const results: number[] = [];
    const e = new AioEngine({
      kind, fd, isBlock: false, alignment: 512, queueDepth: 64,
      onComplete: (_tags, res, n) => {
        for (let i = 0; i < n; i++) results.push(res[i]!);
        pending -= n;
        if (pending === 0) wake?.();
      },
    });
    const run = (q: SubmissionQueue): Promise<void> => {
      pending = q.count;
      const p = new Promise<void>((r) => (wake = r));
      e.submit(q);
      return p;
    };
    try {
      const wmem = new Uint8Array(BATCH * IO + 64);
      const rmem = new Uint8Array(BATCH * IO + 64);
      e.registerBuffer(1, wmem);
      e.registerBuffer(2, rmem);
      const q = new SubmissionQueue();
      for (let round = 0; round < ROUNDS; round++) {
        wmem.set(pattern(BATCH * IO, round + 1), 1);
        for (let i = 0; i < BATCH; i++) {
          q.begin(i, OPS.Write, (round * BATCH + i) * IO);
          q.segment(1, 1 + i * IO, IO);  // odd address: must bounce
        }
        await run(q);
        for (let i = 0; i < BATCH; i++) {
          q.begin(i, OPS.Read, (round * BATCH + i) * IO);
          q.segment(2, 3 + i * IO, IO);
        }
        await run(q);
        assert.ok(Buffer.from(rmem.subarray(3, 3 + BATCH * IO)).equals(Buffer.from(wmem.subarray(1, 1 + BATCH * IO))), `round ${round} reads back`);
      }
      assert.ok(results.every((r) => r === 0), 'every request succeeded');
      const s = e.bounceStats;
      const bounced = ROUNDS * BATCH * 2;
      assert.equal(s.allocations + s.reuses, bounced, 'every request bounced');
      assert.ok(s.allocations <= BATCH, `at most one allocation per request in flight at once (${s.allocations} for ${bounced} bounces)`);

      // 2 MiB is past the largest pooled class: allocated each time, not kept.
      const big = new Uint8Array((2 << 20) + 1);
      e.registerBuffer(3, big);
      for (let i = 0; i < 2; i++) {
        q.begin(100, OPS.Write, 4 << 20);
        q.segment(3, 1, 2 << 20);
        await run(q);
      }
      assert.equal(e.bounceStats.allocations, s.allocations + 2, 'each big bounce allocates');
      assert.equal(e.bounceStats.reuses, s.reuses);
      assert.ok(results.every((r) => r === 0));
    } finally {
      await e.close();
      closeSync(fd);
    }
  });
}
