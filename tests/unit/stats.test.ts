import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { BUCKETS, COUNTER_SLOTS, DiskCounters, percentileUs, rates } from '../../electron/dataplane/block/stats.js';

test('percentiles at bucket resolution', () => {
  const h = new Array(BUCKETS).fill(0);
  h[3] = 90; // 4..8 µs
  h[10] = 9; // 512..1024 µs
  h[20] = 1;
  assert.equal(percentileUs(h, 0.5), 8);
  assert.equal(percentileUs(h, 0.9), 8);
  assert.equal(percentileUs(h, 0.99), 1024);
  assert.equal(percentileUs(h, 1), 2 ** 20);
  assert.equal(percentileUs(new Array(BUCKETS).fill(0), 0.99), 0, 'no samples');
});

test('snapshot reads the shared layout; rates between two snapshots', () => {
  const c = new DiskCounters();
  assert.equal(c.buffer.byteLength, COUNTER_SLOTS * 8);
  const a = { ...c.snapshot(), atMs: 0 };
  c.slots[1] = 1000; // read ops
  c.slots[2] = 4096000; // read bytes
  c.slots[4] = 500; // write ops
  c.slots[18] = 50; // nowait read fallbacks
  c.slots[24] = 2e8; // pool cpu ns
  c.slots[32 + 5] = 1000; // read latency bucket 5 (16..32 µs)
  const b = { ...c.snapshot(), atMs: 2000 };
  assert.equal(b.read.ops, 1000);
  assert.equal(b.nowait.readFallbacks, 50);
  const r = rates(a, b);
  assert.equal(r.readIops, 500);
  assert.equal(r.writeIops, 250);
  assert.equal(r.readBytesPerSec, 2048000);
  assert.equal(r.nowaitFallbacksPerSec, 25);
  assert.equal(r.readP99Us, 32);
  assert.equal(r.cpuLoad, 0.1);
  const shared = new DiskCounters(c.buffer);
  assert.equal(shared.snapshot().read.ops, 1000, 'a second view over the same buffer sees the same counters');
  assert.equal(JSON.parse(JSON.stringify(c.summary())).nowait.readFallbacks, 50);
});

test('a too small buffer is refused', () => {
  assert.throws(() => new DiskCounters(new SharedArrayBuffer(64)), RangeError);
});
