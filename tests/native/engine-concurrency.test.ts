// Many requests in flight complete exactly once; closing drains; engines live in workers;
// an engine dropped or its thread terminated with I/O in flight does not crash the process.
import { test, type TestContext } from '../lib/test.js';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { openSync, closeSync, constants } from 'node:fs';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { DiskCounters } from '../../electron/dataplane/block/stats.js';
import { AioEngine, SubmissionQueue } from '../../electron/dataplane/block/engine.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { OPS, rng } from './engine-helpers.js';
import { waitFor, within } from '../lib/wait.js';

const ENGINES = ['threads', 'native', 'io_uring'] as const;

test('10,000 mixed requests in flight complete exactly once, per engine', async (t) => {
  const dir = tempDir('spindle-conc-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/a.img`, 64 << 20, { written: true });
  for (const aio of ENGINES) {
    const b = await BlockBackend.open(path, { aio, cache: 'none', queueDepth: 64, nowait: 'auto' });
    try {
      const N = 10_000;
      const seen = new Uint8Array(N);
      let completions = 0, failures = 0;
      const all = new Promise<void>((resolve) => {
        b.onComplete = (tags, results, count) => {
          for (let i = 0; i < count; i++) {
            seen[tags[i]!]!++;
            if (results[i] !== 0) failures++;
          }
          completions += count;
          if (completions >= N) resolve();
        };
      });
      b.registerBuffer(1, new Uint8Array(N * 512));
      const random = rng(42);
      for (let i = 0; i < N; i++) {
        const r = random();
        const op = r < 0.45 ? OPS.Read : r < 0.9 ? OPS.Write : r < 0.95 ? OPS.Flush : OPS.WriteZeroes;
        const off = Math.floor(random() * ((64 << 20) / 512)) * 512;
        b.begin(i, op, off, op === OPS.WriteZeroes ? 4096 : 0);
        if (op === OPS.Read || op === OPS.Write) b.segment(1, i * 512, 512);
      }
      b.submit();
      assert.ok(b.inFlight > 0);
      await within(all, { timeoutMs: 120_000, what: `${aio}: all ${N} completions`, detail: () => `${completions} arrived` });
      assert.equal(failures, 0, `${aio}: no request failed`);
      assert.ok(seen.every((n) => n === 1), `${aio}: every tag completed exactly once`);
      assert.equal(b.inFlight, 0);
    } finally {
      await b.close();
    }
  }
});

test('close() with I/O in flight drains it first', async (t) => {
  const dir = tempDir('spindle-conc-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/a.img`, 16 << 20);
  for (const aio of ENGINES) {
    const b = await BlockBackend.open(path, { aio, cache: 'none' });
    let completed = 0;
    b.onComplete = (_t, results, count) => { completed += count; for (let i = 0; i < count; i++) assert.equal(results[i], 0); };
    b.registerBuffer(1, new Uint8Array(1 << 20));
    for (let i = 0; i < 2000; i++) {
      b.begin(i, OPS.Write, (i % 4096) * 4096);
      b.segment(1, (i % 256) * 4096, 4096);
    }
    b.submit();
    await b.close();
    assert.equal(completed, 2000, `${aio}: every request completed before close resolved`);
  }
});

test('an engine destroyed or dropped with I/O in flight neither crashes nor loses memory it writes to', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const dir = tempDir('spindle-conc-', '/var/tmp');
  t.after(() => dir.cleanup());
  const path = makeFile(`${dir.path}/a.img`, 16 << 20, { written: true });
  for (const aio of ENGINES) {
    const fd = openSync(path, constants.O_RDWR | constants.O_DIRECT);
    try {
      let delivered = 0;
      const start = (): AioEngine => {
        const e = new AioEngine({ kind: aio, fd, isBlock: false, alignment: 512, onComplete: (_t, _r, n) => { delivered += n; } });
        e.registerBuffer(1, new Uint8Array(1 << 20));
        const q = new SubmissionQueue();
        for (let i = 0; i < 1000; i++) {
          q.begin(i, OPS.Read, i * 4096);
          q.segment(1, (i % 256) * 4096, 4096);
        }
        e.submit(q);
        return e;
      };
      // Destroyed at once: native drains (blocking) before releasing anything.
      const e = start();
      (e as unknown as { native: { destroy(): void } }).native.destroy();
      // Dropped: the native object keeps itself and its buffers alive until its I/O completes.
      start();
      // Collect while its I/O is in flight, until every completion has been delivered.
      await waitFor(
        () => {
          gc();
          return delivered === 1000;
        },
        { timeoutMs: 60_000, intervalMs: 20, what: `${aio}: the dropped engine to deliver its 1000 completions`, detail: () => `${delivered} delivered` },
      );
      assert.equal(delivered, 1000, `${aio}: the dropped engine delivered each completion once`);
    } finally {
      closeSync(fd);
    }
  }
});

/** A 16 MiB image on a real disk (/var/tmp, for O_DIRECT), removed after the test. */
function workerImage(t: TestContext): string {
  const dir = tempDir('spindle-conc-', '/var/tmp');
  t.after(() => dir.cleanup());
  return makeFile(`${dir.path}/a.img`, 16 << 20);
}

/** engine-worker-fixture.js running `mode` on `path` with this engine, counting into fresh counters. */
function fixtureWorker(path: string, aio: (typeof ENGINES)[number], mode: 'verify' | 'abandon'): { w: Worker; counters: DiskCounters } {
  const counters = new DiskCounters();
  const w = new Worker(new URL('./engine-worker-fixture.js', import.meta.url), { workerData: { path, aio, cache: 'none', counters: counters.buffer, mode } });
  return { w, counters };
}

/** The worker's first report; a worker that fails or exits before it is an error. */
function firstMessage<T>(w: Worker): Promise<T> {
  const first = new Promise<T>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`worker exited with ${code} before reporting`)));
  });
  return within(first, { timeoutMs: 60_000, what: "the worker's first report" });
}

test('an engine inside a worker_thread works, its counters readable from the main thread', async (t) => {
  const path = workerImage(t);
  for (const aio of ENGINES) {
    const { w, counters } = fixtureWorker(path, aio, 'verify');
    const exited = new Promise((r) => w.once('exit', r));
    const msg = await firstMessage<{ ok: boolean }>(w);
    await within(exited, { timeoutMs: 60_000, what: `${aio}: the worker to exit after reporting` });
    assert.equal(msg.ok, true, `${aio}: data read back in the worker`);
    const s = counters.snapshot();
    assert.equal(s.write.ops, 50);
    assert.equal(s.read.ops, 50);
    assert.equal(s.write.bytes, 50 * 8192);
  }
});

test('terminating a worker with I/O in flight does not crash the process', async (t) => {
  const path = workerImage(t);
  for (const aio of ENGINES) {
    const { w, counters } = fixtureWorker(path, aio, 'abandon');
    const msg = await firstMessage<{ inFlight: number }>(w);
    assert.ok(msg.inFlight > 0);
    await within(w.terminate(), { timeoutMs: 60_000, what: `${aio}: terminate() of a worker with I/O in flight` });
    assert.equal(counters.inFlight, 0, `${aio}: the worker's engine drained before its thread went away`);
  }
});

// Found under load: a completion arriving while a worker was being terminated made the addon build
// an Error from no exception, which aborted the whole process ("Error::Error
// napi_define_properties"); and a worker's exit could unload the addon under its own pending uv
// close callbacks (SIGSEGV) when the main thread had not loaded it. In a child process, so a crash
// is a failure that shows its output, not the end of this file.
test('terminating workers with I/O in flight, 10 times per engine, never aborts the process', async (t) => {
  const path = workerImage(t);
  const fixture = fileURLToPath(new URL('./engine-terminate-fixture.js', import.meta.url));
  for (const who of ['main', 'workers-only']) {
    const r = spawnSync(process.execPath, [fixture, path, '10', who], { encoding: 'utf8', timeout: 240_000, killSignal: 'SIGKILL' });
    assert.ok(
      r.status === 0 && /survived/.test(r.stdout),
      `addon loaded by ${who}: exit ${r.status} signal ${r.signal}${r.error ? ` (${r.error.message})` : ''}\n${r.stdout}${r.stderr}`.slice(0, 3000),
    );
  }
});
