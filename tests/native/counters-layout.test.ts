// The counters' layout is written twice, in native/engine/counters.h (what the engine writes)
// and electron/dataplane/block/stats.ts (what every reader reads): the addon exports the native field
// table, and a field added, moved or renamed on one side only fails here.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { closeSync, constants, openSync } from 'node:fs';
import { join } from 'node:path';
import { BUCKETS, COUNTERS_VERSION, COUNTER_SLOTS, DIRECTIONS, DiskCounters, SLOT } from '../../electron/dataplane/block/stats.js';
import { addon } from '../../electron/dataplane/native/addon.js';
import { AioEngine, SubmissionQueue } from '../../electron/dataplane/block/engine.js';
import { BlockOp } from '../../electron/dataplane/block/types.js';
import { makeFile, tempDir } from '../lib/loop.js';

interface NativeLayout {
  version: number;
  slots: number;
  directions: number;
  buckets: number;
  fields: Record<string, number>;
}

test('the native counter layout and its TypeScript view agree field by field', () => {
  const native = addon.engineCountersLayout as NativeLayout;
  assert.deepStrictEqual(native.fields, { ...SLOT }, 'native/engine/counters.h kFields and electron/dataplane/block/stats.ts SLOT differ');
  assert.equal(native.slots, COUNTER_SLOTS, 'slot count');
  assert.equal(native.version, COUNTERS_VERSION, 'layout version');
  assert.equal(native.buckets, BUCKETS, 'histogram buckets');
  assert.equal(native.directions, DIRECTIONS.length, 'directions');
});

test('what an engine counts is what the TypeScript view reads', async () => {
  const dir = tempDir('spindle-counters-');
  const path = join(dir.path, 'disk.img');
  makeFile(path, 1 << 20);
  const fd = openSync(path, constants.O_RDWR);
  const counters = new DiskCounters();
  let completed = 0;
  let allDone = (): void => {};
  const done = new Promise<void>((resolve) => { allDone = resolve; });
  const engine = new AioEngine({
    kind: 'threads', fd, isBlock: false, alignment: 512, counters: counters.slots,
    onComplete: (_tags, _results, count) => {
      completed += count;
      if (completed >= 5) allDone();
    },
  });
  try {
    const mem = new Uint8Array(8192);
    engine.registerBuffer(1, mem);
    const q = new SubmissionQueue();
    q.begin(1, BlockOp.Write, 0);
    q.segment(1, 0, 4096);
    q.begin(2, BlockOp.Write, 4096);
    q.segment(1, 4096, 4096);
    q.begin(3, BlockOp.Read, 0);
    q.segment(1, 0, 512);
    q.begin(4, BlockOp.Flush, 0);
    q.begin(5, 9 as BlockOp, 0); // an unknown op: counted as a failed read
    engine.submit(q);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`waited 30 s for 5 completions, got ${completed}`)), 30_000);
    });
    await Promise.race([done, timeout]).finally(() => clearTimeout(timer));
    const s = counters.snapshot();
    assert.deepEqual({ ops: s.write.ops, bytes: s.write.bytes, errors: s.write.errors }, { ops: 2, bytes: 8192, errors: 0 });
    assert.deepEqual({ ops: s.read.ops, bytes: s.read.bytes, errors: s.read.errors }, { ops: 2, bytes: 512, errors: 1 });
    assert.equal(s.flush.ops, 1);
    assert.equal(s.discard.ops + s.writeZeroes.ops, 0);
    assert.equal(s.write.latencyHistogram.reduce((a, b) => a + b, 0), 2, 'one latency sample per write');
    assert.equal(s.read.latencyHistogram.reduce((a, b) => a + b, 0), 2, 'one latency sample per read');
    assert.equal(s.inFlight, 0);
    assert.equal(counters.slots[SLOT.version], COUNTERS_VERSION);
  } finally {
    await engine.close();
    closeSync(fd);
    dir.cleanup();
  }
});
