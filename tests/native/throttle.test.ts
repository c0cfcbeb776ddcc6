// Per-disk I/O limits (electron/dataplane/block/throttle.ts) over a real BlockBackend on a real
// file: a limited disk stays under its limit over a measured window, the other direction is not
// held back, a burst goes through and then settles, flushes keep their place behind throttled
// writes, and a live change takes effect. Margins are generous (2 shared cores): the bounds are
// what the limits allow plus their bursts, never a tight timing.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { ThrottledDevice } from '../../electron/dataplane/block/throttle.js';
import { BlockOp } from '../../electron/dataplane/block/types.js';
import type { IoLimits } from '../../electron/shared/limits.js';
import { makeFile, tempDir } from '../lib/loop.js';

const SIZE = 16 << 20;
const BUF = 0;

interface Done {
  tag: number;
  op: BlockOp;
  at: number;
  result: number;
}

/** Keeps `depth` requests of `op` × `size` bytes in flight until stopped; records each completion. */
class Driver {
  readonly done: Done[] = [];
  private nextTag = 1;
  private readonly ops = new Map<number, BlockOp>();
  private readonly loops: { op: BlockOp; size: number; depth: number; running: boolean }[] = [];
  readonly t0 = performance.now();

  constructor(readonly dev: ThrottledDevice) {
    dev.registerBuffer(BUF, new Uint8Array(1 << 20));
    dev.onComplete = (tags, results, count) => {
      const at = performance.now() - this.t0;
      for (let i = 0; i < count; i++) {
        const op = this.ops.get(tags[i]!)!;
        this.ops.delete(tags[i]!);
        this.done.push({ tag: tags[i]!, op, at, result: results[i]! });
        const loop = this.loops.find((l) => l.op === op && l.running);
        if (loop) setImmediate(() => loop.running && this.issue(loop.op, loop.size));
      }
    };
  }

  /** Issues one request now; returns its tag. */
  issue(op: BlockOp, size: number): number {
    const tag = this.nextTag++;
    this.ops.set(tag, op);
    const offset = Math.floor(Math.random() * ((SIZE - size) / 4096)) * 4096;
    this.dev.begin(tag, op, offset);
    if (op === BlockOp.Read || op === BlockOp.Write) this.dev.segment(BUF, 0, size);
    this.dev.submit();
    return tag;
  }

  start(op: BlockOp, size: number, depth: number): void {
    this.loops.push({ op, size, depth, running: true });
    for (let i = 0; i < depth; i++) this.issue(op, size);
  }

  stopAll(): void {
    for (const l of this.loops) l.running = false;
  }

  /** Completions of `op` in [fromMs, toMs) since the driver started. */
  count(op: BlockOp, fromMs: number, toMs: number): number {
    return this.done.filter((d) => d.op === op && d.at >= fromMs && d.at < toMs).length;
  }

  async until(ms: number): Promise<void> {
    const wait = this.t0 + ms - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}

async function withDevice(limits: IoLimits, body: (d: Driver) => Promise<void>): Promise<void> {
  const dir = tempDir('spindle-throttle-', '/var/tmp');
  const backend = await BlockBackend.open(makeFile(`${dir.path}/disk.img`, SIZE, { written: true }), { aio: 'threads', cache: 'writeback' });
  const dev = new ThrottledDevice(backend, limits);
  const driver = new Driver(dev);
  try {
    await body(driver);
  } finally {
    driver.stopAll();
    await dev.close();
    dir.cleanup();
  }
  assert.ok(
    driver.done.every((d) => d.result === 0),
    `every request succeeded (${driver.done.filter((d) => d.result !== 0).length} failed)`,
  );
}

test('an iops-write limit holds writes under it over a 2 s window while reads go at full speed', async () => {
  await withDevice({ iopsWrite: 100 }, async (d) => {
    d.start(BlockOp.Write, 4096, 16);
    d.start(BlockOp.Read, 4096, 4);
    await d.until(2500);
    d.stopAll();
    const writes = d.count(BlockOp.Write, 500, 2500);
    const reads = d.count(BlockOp.Read, 500, 2500);
    // 100/s for 2 s, plus the avg/10 bucket QEMU allows and one timer tick of slack.
    assert.ok(writes <= 200 * 1.1 + 10 + 2, `writes stayed under 100/s: ${writes} in 2 s`);
    assert.ok(writes >= 200 * 0.6, `writes were not starved: ${writes} in 2 s`);
    assert.ok(reads > writes * 2, `reads are not limited by a write limit: ${reads} reads vs ${writes} writes`);
  });
});

test('a bps-read limit holds read bandwidth under it; iops-size counts a large request as several', async () => {
  const MiB = 1 << 20;
  await withDevice({ bpsRead: 2 * MiB }, async (d) => {
    d.start(BlockOp.Read, 64 << 10, 8);
    await d.until(2500);
    d.stopAll();
    const bytes = d.count(BlockOp.Read, 500, 2500) * (64 << 10);
    assert.ok(bytes <= 4 * MiB * 1.1 + 0.2 * MiB + (64 << 10), `reads stayed under 2 MiB/s: ${(bytes / MiB).toFixed(2)} MiB in 2 s`);
    assert.ok(bytes >= 4 * MiB * 0.6, `reads were not starved: ${(bytes / MiB).toFixed(2)} MiB in 2 s`);
  });
  // iops-size 4k: a 64k read counts 16 operations, so 320 iops allow ~20 of them per second.
  await withDevice({ iopsTotal: 320, iopsSize: 4096 }, async (d) => {
    d.start(BlockOp.Read, 64 << 10, 8);
    await d.until(2500);
    d.stopAll();
    const n = d.count(BlockOp.Read, 500, 2500);
    assert.ok(n <= 40 * 1.1 + 2 + 2, `64k reads counted as 16 ops each: ${n} in 2 s (at most ~40)`);
    assert.ok(n >= 40 * 0.6, `and still went at that rate: ${n} in 2 s`);
  });
});

test('a burst (iops-write-max for iops-write-max-length s) goes at the burst rate, then settles to the average', async () => {
  // avg 40/s, burst 160/s for 2 s: the bucket (160 × 2 = 320 ops) fills at 160 − 40 = 120/s, so
  // about 2.7 s at ~160/s, then 40/s.
  await withDevice({ iopsWrite: 40, iopsWriteMax: 160, iopsWriteMaxLength: 2 }, async (d) => {
    d.start(BlockOp.Write, 4096, 16);
    await d.until(6000);
    d.stopAll();
    const burst = d.count(BlockOp.Write, 0, 2000);
    const settled = d.count(BlockOp.Write, 4000, 6000);
    assert.ok(burst >= 320 * 0.6, `the burst went well above the average: ${burst} in the first 2 s (average alone: 80)`);
    assert.ok(burst <= 320 * 1.1 + 16 + 2, `the burst stayed under its own rate: ${burst} in 2 s (at most ~320 + 16)`);
    assert.ok(settled <= 80 * 1.15 + 4 + 2, `after the burst the average holds: ${settled} in 2 s (at most ~80)`);
    assert.ok(settled >= 80 * 0.6, `and writes go on at it: ${settled} in 2 s`);
  });
  // Without a length, iops-total-max is a bucket of max ops that go at once, then the average.
  await withDevice({ iopsTotal: 50, iopsTotalMax: 400 }, async (d) => {
    d.start(BlockOp.Write, 4096, 16);
    await d.until(4000);
    d.stopAll();
    const first = d.count(BlockOp.Write, 0, 1500);
    const later = d.count(BlockOp.Write, 2000, 4000);
    assert.ok(first >= 400 * 0.9, `the burst bucket let ~400 writes through at once: ${first} in 1.5 s`);
    assert.ok(later <= 100 * 1.15 + 5 + 2, `then 50/s: ${later} in 2 s`);
  });
});

test('a flush completes after every write queued before it, and reads are not held behind it', async () => {
  await withDevice({ iopsWrite: 20 }, async (d) => {
    const writes = Array.from({ length: 8 }, () => d.issue(BlockOp.Write, 4096));
    const flush = d.issue(BlockOp.Flush, 0);
    const after = d.issue(BlockOp.Write, 4096);
    const read = d.issue(BlockOp.Read, 4096);
    const deadline = performance.now() + 20_000;
    while (d.done.length < 11) {
      assert.ok(performance.now() < deadline, `waited 20 s for 11 completions, got ${d.done.length}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const order = d.done.map((x) => x.tag);
    const at = (tag: number) => order.indexOf(tag);
    for (const w of writes) assert.ok(at(w) < at(flush), `write ${w} completed before the flush (order ${order.join(',')})`);
    assert.ok(at(flush) < at(after), `the write after the flush was not released ahead of it (order ${order.join(',')})`);
    assert.ok(at(read) < at(writes[writes.length - 1]!), `the read did not wait behind throttled writes (order ${order.join(',')})`);
  });
});

test('a live change of limits takes effect on queued and new requests; {} removes them', async () => {
  await withDevice({ iopsWrite: 40 }, async (d) => {
    d.start(BlockOp.Write, 4096, 16);
    await d.until(2000);
    const slow = d.count(BlockOp.Write, 500, 2000);
    d.dev.setLimits({ iopsWrite: 400 });
    await d.until(4000);
    const fast = d.count(BlockOp.Write, 2500, 4000);
    d.dev.setLimits({});
    await d.until(5500);
    d.stopAll();
    const free = d.count(BlockOp.Write, 4500, 5500);
    assert.ok(slow <= 60 * 1.15 + 4 + 2, `at 40/s: ${slow} in 1.5 s`);
    assert.ok(fast > slow * 4 && fast <= 600 * 1.1 + 40 + 2, `raised to 400/s: ${fast} in 1.5 s (was ${slow})`);
    assert.ok(free > 0 && !d.dev.limited, `without limits writes pass straight through: ${free} in 1 s`);
    assert.equal(d.dev.stats.queued, 0, 'nothing waits once the limits are gone');
  });
});

test('drain waits for queued requests; close releases whatever still waits', async () => {
  await withDevice({ iopsWrite: 10 }, async (d) => {
    for (let i = 0; i < 6; i++) d.issue(BlockOp.Write, 4096);
    assert.ok(d.dev.stats.queued > 0, 'some writes wait for their turn');
    await d.dev.drain();
    assert.equal(d.count(BlockOp.Write, 0, Infinity), 6, 'drain resolved after all six completed');
    for (let i = 0; i < 20; i++) d.issue(BlockOp.Write, 4096);
    assert.ok(d.dev.stats.queued >= 15, `most of 20 writes wait at 10/s (${d.dev.stats.queued})`);
    const t = performance.now();
    await d.dev.close();
    assert.equal(d.count(BlockOp.Write, 0, Infinity), 26, 'close completed every queued write');
    assert.ok(performance.now() - t < 1500, `close did not wait for the limit (${Math.round(performance.now() - t)} ms; 2 s at 10/s)`);
  });
});
