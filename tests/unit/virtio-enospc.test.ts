// The ENOSPC policy (QEMU's werror) of the virtio-blk device on hand-built rings: 'stop' parks the
// requests that fail for lack of space (no status, no used entry), raises onNoSpace, retries them on
// retryParked() whether or not their ring runs, and gives each back to the guest exactly once, with
// its own descriptor head: at once when its ring runs, else when the ring starts again (a VM paused
// for lack of space, resumed). 'report' gives the guest IOERR. The block layer is the
// MemoryBlockDevice test double (failOp forces an errno); tests/native/enospc-stop.test.ts does the
// same on a real full filesystem.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { BlockOp } from '../../electron/dataplane/block/types.js';
import {
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_IOERR,
  VirtioBlkDevice,
  type NoSpaceEvent,
  type SpaceRecoveredEvent,
} from '../../electron/dataplane/virtio/virtio-blk.js';
import { MemoryBlockDevice, type RecordedRequest } from './helpers/memory-block-device.js';
import { harness, send, kick, statusOf, pattern, TestGuest, type Harness } from './helpers/test-guest.js';

const ENOSPC = -28;
const EIO = -5;
const SECTOR = 512;

interface Events {
  noSpace: NoSpaceEvent[];
  recovered: SpaceRecoveredEvent[];
  resubmitted: number;
}

function stopHarness(opts: { queues?: number; guest?: TestGuest; failureCounts?: Float64Array } = {}): { h: Harness; ev: Events } {
  const h = harness({
    queues: opts.queues ?? 2,
    ...(opts.guest ? { guest: opts.guest } : {}),
    dev: { diskPath: '/var/lib/spindle/a.img', ...(opts.failureCounts ? { failureCounts: opts.failureCounts } : {}) },
  });
  const ev: Events = { noSpace: [], recovered: [], resubmitted: 0 };
  h.dev.onNoSpace = (e) => ev.noSpace.push(e);
  h.dev.onSpaceRecovered = (e) => ev.recovered.push(e);
  h.dev.onResubmitted = (_q, n) => {
    ev.resubmitted += n;
  };
  return { h, ev };
}

/** Heads the guest got back on queue q since the last call; throws like the guest's "is not a head"
 *  when the device returns a head the driver does not have in flight. */
const usedOf = (h: Harness, q: number): number[] => {
  const heads: number[] = [];
  h.rings[q]!.collect((head) => heads.push(head));
  return heads;
};

/** Completes the pending requests one by one, failing each write with `errno`. */
function failWrites(h: Harness, errno: number): void {
  for (;;) {
    h.blk.failOp.set(BlockOp.Write, errno);
    let chosen: RecordedRequest | null = null;
    const n = h.blk.completeWhere((r) => {
      if (chosen) return r === chosen;
      if (r.op !== BlockOp.Write) return false;
      chosen = r;
      return true;
    });
    h.blk.failOp.delete(BlockOp.Write);
    if (n === 0) break;
  }
}

/** Restarts ring q as the vhost-user server does after GET_VRING_BASE (a VM resumed), optionally
 *  with the frontend's inflight region, at `base`. */
function startRing(h: Harness, q: number, base: number, inflight?: SharedArrayBuffer): void {
  const ring = h.rings[q]!;
  h.dev.startQueue(q, {
    size: ring.size,
    descAddr: ring.descAddr,
    availAddr: ring.availAddr,
    usedAddr: ring.usedAddr,
    lastAvailIdx: base,
    notify: () => {},
    ...(inflight ? { inflight: new DataView(inflight) } : {}),
  });
  h.dev.kick(q); // the server looks at a ring as soon as it starts it
}

test("'stop' (the default): a write that meets ENOSPC is parked, not completed; one event; retryParked writes it and the guest gets it once", async () => {
  const { h, ev } = stopHarness();
  const data = pattern(4096, 1);
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 8, data);
  const r = send(h, 0, VIRTIO_BLK_T_IN, 64, 512);
  kick(h, 0);
  failWrites(h, ENOSPC);
  h.blk.completeAll();
  assert.equal(statusOf(h, w), 0xff, 'no status for the parked write: the guest sees no error');
  assert.equal(statusOf(h, r), VIRTIO_BLK_S_OK, 'the read completes');
  assert.deepEqual(usedOf(h, 0), [r.head], 'only the read is used');
  assert.equal(h.dev.parkedRequests, 1);
  assert.equal(h.dev.parkedBytes, 4096);
  assert.deepEqual(ev.noSpace, [
    {
      parked: 1,
      parkedBytes: 4096,
      retried: false,
      sentence: 'The filesystem holding /var/lib/spindle/a.img is full: 1 write waits until space is freed.',
    },
  ]);

  // A second write failing the same way on another queue: parked, no second event.
  const w2 = send(h, 1, VIRTIO_BLK_T_OUT, 16, data);
  kick(h, 1);
  failWrites(h, ENOSPC);
  assert.equal(h.dev.parkedRequests, 2);
  assert.equal(ev.noSpace.length, 1, 'one event until space suffices again');

  const outcome = h.dev.retryParked();
  const resent = h.blk.log.filter((x) => x.op === BlockOp.Write);
  assert.equal(resent.length, 4, 'both writes submitted again');
  assert.deepEqual(resent[2]!.segments, resent[0]!.segments, 'from the same guest memory');
  assert.equal(resent[2]!.offset, 8 * SECTOR);
  h.blk.completeAll();
  assert.deepEqual(await outcome, { retried: 2, parked: 0 });
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_OK);
  assert.equal(statusOf(h, w2), VIRTIO_BLK_S_OK);
  assert.deepEqual(usedOf(h, 0), [w.head]);
  assert.deepEqual(usedOf(h, 1), [w2.head]);
  assert.equal(h.dev.parkedRequests, 0);
  assert.equal(ev.recovered.length, 1);
  assert.equal(ev.recovered[0]!.completed, 2);
  assert.deepEqual(h.blk.disk.subarray(8 * SECTOR, 8 * SECTOR + 4096), data, 'nothing lost');
});

test('a retry that meets ENOSPC again parks again without an error, says so, and a later retry completes it once', async () => {
  const { h, ev } = stopHarness();
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 0, pattern(512, 2));
  kick(h, 0);
  failWrites(h, ENOSPC);
  const first = h.dev.retryParked();
  failWrites(h, ENOSPC);
  assert.deepEqual(await first, { retried: 1, parked: 1 });
  assert.deepEqual(
    ev.noSpace.map((e) => e.retried),
    [false, true],
  );
  assert.equal(h.dev.parkedRequests, 1);
  assert.equal(statusOf(h, w), 0xff, 'still no status');
  assert.deepEqual(usedOf(h, 0), [], 'nothing used');
  assert.equal(ev.recovered.length, 0);
  const second = h.dev.retryParked();
  h.blk.completeAll();
  assert.deepEqual(await second, { retried: 1, parked: 0 });
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_OK);
  assert.deepEqual(usedOf(h, 0), [w.head]);
  assert.equal(ev.recovered.length, 1);
});

test('a VM paused for lack of space: the retry writes while the ring is stopped, the guest gets it once when the ring starts again', async () => {
  const { h, ev } = stopHarness({ queues: 1 });
  const data = pattern(1024, 3);
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 4, data);
  kick(h, 0);
  failWrites(h, ENOSPC);
  // QEMU stops the vhost rings when the VM pauses (GET_VRING_BASE): that must answer at once.
  const base = await h.dev.stopQueue(0);
  assert.equal(base, 1, 'the parked chain counts as taken from the avail ring');
  const outcome = h.dev.retryParked();
  h.blk.completeAll();
  assert.deepEqual(await outcome, { retried: 1, parked: 0 });
  assert.deepEqual(h.blk.disk.subarray(4 * SECTOR, 4 * SECTOR + 1024), data, 'written while the VM is paused');
  assert.equal(ev.recovered.length, 1, 'recovered: the owner may resume the VM now');
  assert.equal(h.rings[0]!.usedIdx(), 0, 'but nothing touches the stopped ring');
  assert.equal(statusOf(h, w), 0xff);

  h.dev.setMemory(h.guest.regions); // QEMU sends the table again at every vhost start
  startRing(h, 0, base);
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_OK);
  assert.deepEqual(usedOf(h, 0), [w.head], 'once, with its own head');
  assert.equal(h.blk.log.filter((x) => x.op === BlockOp.Write).length, 2, 'the ENOSPC attempt and one retry');

  const next = send(h, 0, VIRTIO_BLK_T_OUT, 32, pattern(512, 4));
  kick(h, 0);
  h.blk.completeAll();
  assert.deepEqual(usedOf(h, 0), [next.head], 'the ring goes on normally');
});

test('with an inflight region (QEMU restarts the ring with it after a pause), the parked write is not resubmitted from it a second time', async () => {
  const { h, ev } = stopHarness({ queues: 1 });
  const region = new SharedArrayBuffer(16 + 16 * 16);
  await h.dev.stopQueue(0);
  startRing(h, 0, 0, region);
  const data = pattern(4096, 21);
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 8, data);
  const r = send(h, 0, VIRTIO_BLK_T_IN, 64, 512);
  kick(h, 0);
  failWrites(h, ENOSPC);
  h.blk.completeAll();
  assert.deepEqual(usedOf(h, 0), [r.head]);

  // Paused, space freed and the write retried, resumed: the region still marks it in flight.
  const base = await h.dev.stopQueue(0);
  const outcome = h.dev.retryParked();
  h.blk.completeAll();
  await outcome;
  h.dev.setMemory(h.guest.regions);
  startRing(h, 0, base, region);
  h.blk.completeAll();
  assert.deepEqual(usedOf(h, 0), [w.head], 'the write comes back once, with its head (twice is "is not a head" in the guest)');
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_OK);
  assert.equal(ev.resubmitted, 0, 'nothing resubmitted from the region: the device still held it');
  assert.equal(h.blk.log.filter((x) => x.op === BlockOp.Write).length, 2, 'written twice: the ENOSPC attempt and one retry');
  assert.deepEqual(h.blk.disk.subarray(8 * SECTOR, 8 * SECTOR + 4096), data);

  const w2 = send(h, 0, VIRTIO_BLK_T_OUT, 16, pattern(512, 22));
  kick(h, 0);
  h.blk.completeAll();
  assert.deepEqual(usedOf(h, 0), [w2.head], 'the ring goes on normally afterwards');
});

test('resumed before space came back (inflight region): the write stays parked across the restart and completes once when retried on the running ring', async () => {
  const { h, ev } = stopHarness({ queues: 1 });
  const region = new SharedArrayBuffer(16 + 16 * 16);
  await h.dev.stopQueue(0);
  startRing(h, 0, 0, region);
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 8, pattern(2048, 23));
  kick(h, 0);
  failWrites(h, ENOSPC);
  const base = await h.dev.stopQueue(0);
  startRing(h, 0, base, region);
  h.blk.completeAll();
  assert.equal(h.blk.log.filter((x) => x.op === BlockOp.Write).length, 1, 'not started again by the restart');
  assert.equal(ev.resubmitted, 0);
  assert.equal(h.dev.parkedRequests, 1);
  const outcome = h.dev.retryParked();
  h.blk.completeAll();
  assert.deepEqual(await outcome, { retried: 1, parked: 0 });
  assert.deepEqual(usedOf(h, 0), [w.head]);
});

test('a retry in flight when the ring starts again completes once on the running ring', async () => {
  const { h } = stopHarness({ queues: 1 });
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 8, pattern(512, 24));
  kick(h, 0);
  failWrites(h, ENOSPC);
  const base = await h.dev.stopQueue(0);
  const outcome = h.dev.retryParked();
  startRing(h, 0, base);
  assert.deepEqual(usedOf(h, 0), [], 'still being written');
  h.blk.completeAll();
  await outcome;
  assert.deepEqual(usedOf(h, 0), [w.head]);
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_OK);
});

test('a ring set up anew (the driver reset it: another base) drops the parked request instead of completing a stale head into it', async () => {
  const { h, ev } = stopHarness({ queues: 1 });
  send(h, 0, VIRTIO_BLK_T_OUT, 8, pattern(512, 25));
  kick(h, 0);
  failWrites(h, ENOSPC);
  await h.dev.stopQueue(0);
  const outcome = h.dev.retryParked();
  h.blk.completeAll();
  await outcome;
  startRing(h, 0, 0); // base 0, not the 1 it was stopped at
  assert.equal(h.rings[0]!.usedIdx(), 0, 'nothing was put on the new ring');
  assert.equal(h.dev.parkedRequests, 0);
  assert.equal(ev.recovered.length, 1);
});

test('with an inflight region, a request the region no longer marks in flight (a fresh region after a reset) is dropped', async () => {
  const { h, ev } = stopHarness({ queues: 1 });
  const region = new SharedArrayBuffer(16 + 16 * 16);
  await h.dev.stopQueue(0);
  startRing(h, 0, 0, region);
  send(h, 0, VIRTIO_BLK_T_OUT, 8, pattern(512, 26));
  kick(h, 0);
  failWrites(h, ENOSPC);
  const base = await h.dev.stopQueue(0);
  startRing(h, 0, base, new SharedArrayBuffer(16 + 16 * 16));
  assert.equal(h.dev.parkedRequests, 0);
  assert.equal(h.rings[0]!.usedIdx(), 0);
  assert.deepEqual(
    ev.recovered.map(({ completed, dropped }) => ({ completed, dropped })),
    [{ completed: 0, dropped: 1 }],
    'nothing waits any more: said so',
  );
});

test('a chain the guest rewrote while its write was in flight is not parked: it fails with IOERR', () => {
  const failureCounts = new Float64Array(5);
  const { h, ev } = stopHarness({ failureCounts });
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 0, pattern(1024, 4));
  kick(h, 0);
  const ring = h.rings[0]!;
  // The data descriptor (the one after the header) now claims 512 bytes.
  const dv = h.guest.view(ring.descAddr + 16 * ((w.head + 1) % ring.size), 16);
  dv.setUint32(8, 512, true);
  failWrites(h, ENOSPC);
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_IOERR);
  assert.deepEqual(usedOf(h, 0), [w.head]);
  assert.equal(h.dev.parkedRequests, 0);
  assert.equal(ev.noSpace.length, 0);
  assert.equal(failureCounts[BlockOp.Write], 1, 'counted as a failure the guest sees');
});

test('the guest memory table changes while a retry is in flight: setMemory waits for it; later retries find the data by guest address', async () => {
  const guest = new TestGuest(1 << 20);
  const { h } = stopHarness({ queues: 1, guest });
  const data = pattern(4096, 27);
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 8, data);
  const w2 = send(h, 0, VIRTIO_BLK_T_OUT, 64, pattern(512, 28));
  kick(h, 0);
  failWrites(h, ENOSPC);
  const base = await h.dev.stopQueue(0);
  const first = h.dev.retryParked();
  // One write completes (ENOSPC again), the other is still in the block layer when the table changes.
  h.blk.failOp.set(BlockOp.Write, ENOSPC);
  h.blk.completeWhere((r) => r.offset === 64 * SECTOR);
  const swapped = h.dev.setMemory(guest.regions.map((r) => ({ ...r, frontendAddr: r.frontendAddr + 0x1000_0000 })));
  assert.ok(swapped instanceof Promise, 'it waits');
  let done = false;
  void swapped.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(done, false, 'not before the retry completed');
  assert.equal(h.blk.inFlight, 1);
  h.blk.completeAll();
  await swapped;
  await first;
  startRing(h, 0, base);
  assert.deepEqual(usedOf(h, 0), [w.head]);
  const second = h.dev.retryParked();
  h.blk.completeAll();
  assert.deepEqual(await second, { retried: 1, parked: 0 });
  assert.deepEqual(usedOf(h, 0), [w2.head]);
  assert.deepEqual(h.blk.disk.subarray(8 * SECTOR, 8 * SECTOR + 4096), data);
});

test('a flush that meets ENOSPC is parked and retried like a write', async () => {
  const { h } = stopHarness({ queues: 1 });
  const f = send(h, 0, VIRTIO_BLK_T_FLUSH, 0);
  kick(h, 0);
  h.blk.failOp.set(BlockOp.Flush, ENOSPC);
  h.blk.completeAll();
  assert.equal(h.dev.parkedRequests, 1);
  assert.equal(h.dev.parkedBytes, 0);
  const outcome = h.dev.retryParked();
  h.blk.completeAll();
  await outcome;
  assert.deepEqual(usedOf(h, 0), [f.head]);
  assert.equal(statusOf(h, f), VIRTIO_BLK_S_OK);
});

test('reset (the frontend went away) drops parked requests, also one being retried', async () => {
  const { h, ev } = stopHarness();
  send(h, 0, VIRTIO_BLK_T_OUT, 0, pattern(512, 5));
  send(h, 1, VIRTIO_BLK_T_OUT, 8, pattern(512, 5));
  kick(h, 0);
  kick(h, 1);
  failWrites(h, ENOSPC);
  void h.dev.retryParked();
  let reset = false;
  const resetting = h.dev.reset().then(() => (reset = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(reset, false, 'reset waits for the retries in the block layer (their memory goes next)');
  h.blk.completeAll();
  await resetting;
  assert.equal(h.dev.parkedRequests, 0);
  assert.deepEqual(
    ev.recovered.map(({ completed, dropped }) => ({ completed, dropped })),
    [{ completed: 0, dropped: 2 }],
  );
  assert.deepEqual(await h.dev.retryParked(), { retried: 0, parked: 0 });
});

test("'report': the guest gets IOERR, nothing is parked, and the failure is counted", () => {
  const failureCounts = new Float64Array(5);
  const h = harness({ queues: 1, dev: { enospc: 'report', failureCounts } });
  let raised = 0;
  h.dev.onNoSpace = () => raised++;
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 0, pattern(512, 6));
  kick(h, 0);
  failWrites(h, ENOSPC);
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_IOERR);
  assert.equal(h.dev.parkedRequests, 0);
  assert.equal(raised, 0);
  assert.equal(failureCounts[BlockOp.Write], 1);
});

test("other errors are not parked under 'stop' (EIO is IOERR and counted); parked requests are not counted as failed", () => {
  const failureCounts = new Float64Array(5);
  const { h, ev } = stopHarness({ failureCounts });
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 0, pattern(512, 7));
  kick(h, 0);
  failWrites(h, EIO);
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_IOERR);
  assert.equal(ev.noSpace.length, 0);
  assert.equal(failureCounts[BlockOp.Write], 1);
  send(h, 0, VIRTIO_BLK_T_OUT, 8, pattern(512, 8));
  kick(h, 0);
  failWrites(h, ENOSPC);
  assert.equal(h.dev.parkedRequests, 1);
  assert.equal(failureCounts[BlockOp.Write], 1, 'the parked write is not a failure');
});

test('an unknown ENOSPC policy is refused with a sentence', () => {
  assert.throws(() => new VirtioBlkDevice(new MemoryBlockDevice(), { numQueues: 1, enospc: 'pause' as never }), {
    name: 'RangeError',
    message: `the ENOSPC policy must be 'stop' or 'report', not "pause"`,
  });
});
