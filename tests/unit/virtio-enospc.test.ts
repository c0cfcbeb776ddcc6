// The ENOSPC policy (QEMU's werror) of the virtio-blk device: 'stop' parks requests that fail for
// lack of space, raises onNoSpace once and resubmits them on resumeParked(), across a VM pause
// (rings stopped and started again); 'report' gives the guest IOERR. The block layer is the
// MemoryBlockDevice test double (failOp forces -ENOSPC); tests/native/enospc-stop.test.ts does
// the same on a real full filesystem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockOp } from '../../electron/block/types.js';
import {
  VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR, VirtioBlkDevice, type NoSpaceEvent,
} from '../../electron/virtio/virtio-blk.js';
import { MemoryBlockDevice } from './helpers/memory-block-device.js';
import { harness, send, kick, statusOf, pattern } from './helpers/test-guest.js';

const ENOSPC = -28;

function stopHarness() {
  const h = harness({ queues: 2, dev: { diskPath: '/var/lib/spindle/a.img' } });
  const events: NoSpaceEvent[] = [];
  h.dev.onNoSpace = (e) => events.push(e);
  return { h, events };
}

const usedOf = (h: ReturnType<typeof harness>, q: number): number[] => {
  const heads: number[] = [];
  h.rings[q].collect((head) => heads.push(head));
  return heads;
};

test("enospc 'stop' (the default): the write is parked, not completed; one event with a sentence; resume completes it", () => {
  const { h, events } = stopHarness();
  const data = pattern(4096, 1);
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 8, data);
  const r = send(h, 0, VIRTIO_BLK_T_IN, 64, 512);
  kick(h, 0);
  h.blk.failOp.set(BlockOp.Write, ENOSPC);
  h.blk.completeAll();
  assert.equal(statusOf(h, w), 0xff, 'no status for the parked write: the guest sees no error');
  assert.equal(statusOf(h, r), VIRTIO_BLK_S_OK, 'the read completes');
  assert.deepEqual(usedOf(h, 0), [r.head], 'only the read is used');
  assert.equal(h.dev.parkedRequests, 1);
  assert.equal(events.length, 1);
  assert.match(events[0]!.sentence, /^The filesystem holding \/var\/lib\/spindle\/a\.img is full: the VM is paused until space is freed\.$/);

  // A second request failing the same way while the VM is being paused: parked, no second event.
  const w2 = send(h, 1, VIRTIO_BLK_T_OUT, 16, data);
  kick(h, 1);
  h.blk.failOp.set(BlockOp.Write, ENOSPC);
  h.blk.completeAll();
  assert.equal(h.dev.parkedRequests, 2);
  assert.equal(events.length, 1, 'one event per stop');

  assert.equal(h.dev.resumeParked(), 2);
  assert.equal(h.dev.parkedRequests, 0);
  const resent = h.blk.log.filter((x) => x.op === BlockOp.Write);
  assert.equal(resent.length, 4, 'both writes submitted again');
  assert.deepEqual(resent[2]!.segments, resent[0]!.segments, 'the same guest memory, re-read from the chain');
  assert.equal(resent[2]!.offset, 8 * 512);
  h.blk.completeAll();
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_OK);
  assert.equal(statusOf(h, w2), VIRTIO_BLK_S_OK);
  assert.deepEqual(usedOf(h, 0), [w.head]);
  assert.deepEqual(usedOf(h, 1), [w2.head]);
  assert.deepEqual(h.blk.disk.subarray(8 * 512, 8 * 512 + 4096), data, 'nothing lost');
});

test("a resubmitted request that meets ENOSPC again is parked again and raises the event again", () => {
  const { h, events } = stopHarness();
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 0, pattern(512, 2));
  kick(h, 0);
  h.blk.failOp.set(BlockOp.Write, ENOSPC);
  h.blk.completeAll();
  h.dev.resumeParked();
  h.blk.failOp.set(BlockOp.Write, ENOSPC);
  h.blk.completeAll();
  assert.equal(events.length, 2);
  assert.equal(h.dev.parkedRequests, 1);
  assert.equal(statusOf(h, w), 0xff);
  h.dev.resumeParked();
  h.blk.completeAll();
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_OK);
});

test('a VM pause with parked requests: stopQueue does not wait for them; after the rings restart, resume completes them', async () => {
  const { h } = stopHarness();
  const data = pattern(1024, 3);
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 4, data);
  kick(h, 0);
  h.blk.failOp.set(BlockOp.Write, ENOSPC);
  h.blk.completeAll();
  // QEMU stops the vhost rings when the VM pauses (GET_VRING_BASE): that must answer at once.
  const base = await h.dev.stopQueue(0);
  assert.equal(base, 1, 'the parked chain counts as taken from the avail ring');
  assert.equal(h.dev.resumeParked(), 0, 'its ring is stopped: nothing submitted yet');
  assert.equal(h.dev.parkedRequests, 1);
  const ring = h.rings[0]!;
  h.dev.startQueue(0, { size: ring.size, descAddr: ring.descAddr, availAddr: ring.availAddr, usedAddr: ring.usedAddr, lastAvailIdx: base, notify: () => {} });
  assert.equal(h.dev.parkedRequests, 0, 'submitted as soon as its ring started again');
  h.blk.completeAll();
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_OK);
  assert.deepEqual(usedOf(h, 0), [w.head]);
  assert.deepEqual(h.blk.disk.subarray(4 * 512, 4 * 512 + 1024), data);
});

test('a parked chain the guest corrupted meanwhile stops its queue when resubmitted, like any malformed chain', () => {
  const { h } = stopHarness();
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 0, pattern(512, 4));
  kick(h, 0);
  h.blk.failOp.set(BlockOp.Write, ENOSPC);
  h.blk.completeAll();
  h.rings[0]!.writeDesc(w.head, 0xdead_0000_0000, 16, 0, 0);  // header now outside guest memory
  h.dev.resumeParked();
  assert.equal(h.dev.broken, true);
  assert.match(h.broken[0]!.reason, /outside guest memory/);
  assert.equal(h.blk.inFlight, 0, 'nothing was submitted for it');
});

test("reset (the frontend went away) drops parked requests", async () => {
  const { h } = stopHarness();
  send(h, 0, VIRTIO_BLK_T_OUT, 0, pattern(512, 5));
  kick(h, 0);
  h.blk.failOp.set(BlockOp.Write, ENOSPC);
  h.blk.completeAll();
  await h.dev.reset();
  assert.equal(h.dev.parkedRequests, 0);
  assert.equal(h.dev.resumeParked(), 0);
});

test("enospc 'report': the guest gets IOERR and nothing is parked", () => {
  const h = harness({ queues: 1, dev: { enospc: 'report' } });
  let raised = 0;
  h.dev.onNoSpace = () => raised++;
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 0, pattern(512, 6));
  kick(h, 0);
  h.blk.failOp.set(BlockOp.Write, ENOSPC);
  h.blk.completeAll();
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_IOERR);
  assert.equal(h.dev.parkedRequests, 0);
  assert.equal(raised, 0);
});

test('other errors are not parked under stop: EIO is IOERR', () => {
  const { h, events } = stopHarness();
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 0, pattern(512, 7));
  kick(h, 0);
  h.blk.failOp.set(BlockOp.Write, -5);
  h.blk.completeAll();
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_IOERR);
  assert.equal(events.length, 0);
});

test('an unknown ENOSPC policy is refused with a sentence', () => {
  assert.throws(() => new VirtioBlkDevice(new MemoryBlockDevice(), { numQueues: 1, enospc: 'pause' as never }),
    { name: 'RangeError', message: `the ENOSPC policy must be 'stop' or 'report', not "pause"` });
});
