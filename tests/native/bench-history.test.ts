// Completed aio comparisons are kept per disk (bench.history) in the data directory, with what
// was measured and where (disk, size, date, kernel), and survive a restart of the backend; real
// files, real DiskServer IOThreads and loadgen over vhost-user, as in bench-compare.test.ts.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import { methods, type Result, type TopicEvent } from '../../electron/shared/api.js';
import { apiSetup } from '../lib/api.js';
import { within } from '../lib/wait.js';

type BenchResult = Result<'bench.result'>;

async function runToEnd(router: { call(m: string, p: unknown): Promise<unknown>; subscribe(t: string, p: unknown, l: (e: unknown) => void): () => void }, params: unknown): Promise<BenchResult> {
  const { benchId } = (await router.call('bench.start', params)) as { benchId: string };
  await within(
    new Promise<void>((resolve) => {
      const off = router.subscribe('bench.progress', { benchId }, (e) => {
        if ((e as TopicEvent<'bench.progress'>).state !== 'running') { off(); resolve(); }
      });
    }),
    { timeoutMs: 300_000, what: `comparison ${benchId} to end` },
  );
  return (await router.call('bench.result', { benchId })) as BenchResult;
}

test('bench.history: completed runs per disk, newest first, with disk, size, date and kernel; kept across a restart', async () => {
  const s = apiSetup('spindle-bench-history-', { base: '/var/tmp' });
  let second: ReturnType<typeof createBackend> | undefined;
  try {
    const img = join(s.dir, 'target.img');
    writeFileSync(img, '');
    truncateSync(img, 16 << 20);
    const params = { target: { kind: 'path', path: img }, variants: [{ aio: 'threads' }], workloads: [{ op: 'write', recordBytes: 65536 }], bytesPerRun: 1 << 20 };
    assert.deepEqual(await s.router.call('bench.history', { target: { kind: 'path', path: img } }), { runs: [] });
    const first = await runToEnd(s.router, params);
    assert.equal(first.state, 'done', first.error);
    assert.equal(first.info?.disk, img);
    assert.equal(first.info?.sizeBytes, 16 << 20);
    assert.equal(first.info?.kernel, release());
    assert.ok(!Number.isNaN(Date.parse(first.info!.startedAt)));
    const later = await runToEnd(s.router, params);
    // A cancelled run is not kept.
    const { benchId } = (await s.router.call('bench.start', { ...params, bytesPerRun: 1 << 30 })) as { benchId: string };
    await s.router.call('bench.cancel', { benchId });
    const h = methods['bench.history'].result.parse(await s.router.call('bench.history', { target: { kind: 'path', path: img } }));
    assert.deepEqual(h.runs.map((r) => r.benchId), [later.benchId, first.benchId]);
    assert.deepEqual(h.runs[1].rows, first.rows);
    const dir = join(s.env.XDG_DATA_HOME!, 'spindle', 'compare');
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(readdirSync(dir).length, 1, 'one file per disk');
    // Another backend on the same data directory (a restart) still has them.
    second = createBackend({ env: s.env });
    const again = methods['bench.history'].result.parse(await second.router.call('bench.history', { target: { kind: 'path', path: img } }));
    assert.deepEqual(again.runs.map((r) => r.benchId), [later.benchId, first.benchId]);
    // Another disk has its own (empty) history.
    assert.deepEqual(await s.router.call('bench.history', { target: { kind: 'scratch' } }), { runs: [] });
  } finally {
    await second?.close();
    await s.cleanup();
  }
});

test('bench.start with repeats measures the table that many times, each row tagged with its repeat', async () => {
  const s = apiSetup('spindle-bench-repeats-', { base: '/var/tmp' });
  try {
    const img = join(s.dir, 'target.img');
    writeFileSync(img, '');
    truncateSync(img, 16 << 20);
    const r = await runToEnd(s.router, { target: { kind: 'path', path: img }, variants: [{ aio: 'threads' }, { aio: 'io_uring' }], workloads: [{ op: 'write', recordBytes: 65536 }], bytesPerRun: 1 << 20, repeats: 2 });
    assert.equal(r.state, 'done', r.error);
    assert.deepEqual(r.rows.map((x) => `${x.mode}:${x.repeat}`), ['threads:0', 'io_uring:0', 'threads:1', 'io_uring:1']);
    await assert.rejects(s.router.call('bench.start', { target: { kind: 'path', path: img }, repeats: 9 }), /repeats/);
  } finally {
    await s.cleanup();
  }
});
