// Guest RAM regions are views that may start at an offset inside their ArrayBuffer (guest RAM mapped
// inside a V8 buffer where external buffers are refused): every layer must address the region
// from the view's first byte and never touch the bytes around it.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_S_OK, VirtioBlkDevice } from '../../electron/dataplane/virtio/virtio-blk.js';
import { GuestMemory } from '../../electron/dataplane/virtio/guest-memory.js';
import { DriverRing } from '../../electron/tools/driver-ring.js';
import { MemoryBlockDevice } from './helpers/memory-block-device.js';
import { harness, send, kick, statusOf, pattern, TestGuest, REGION_BYTE_OFFSET } from './helpers/test-guest.js';

/** The bytes of r's buffer outside the region view (set to 0xee by offsetRegionMemory). */
function guardBytes(r: Uint8Array): number[] {
  const whole = new Uint8Array(r.buffer);
  return [...whole.subarray(0, r.byteOffset), ...whole.subarray(r.byteOffset + r.byteLength)];
}

test('writes and reads through regions at an offset in their buffers land on the right bytes, and nothing outside', () => {
  const guest = new TestGuest(1 << 20, { size: 1 << 16, gap: 0 });
  assert.ok(
    guest.regions.every((r) => r.memory.byteOffset === REGION_BYTE_OFFSET),
    'the regions are offset views',
  );
  const h = harness({ guest, queues: 1 });
  const data = pattern(8192, 7);
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 8, data, { pieces: 3 });
  kick(h, 0);
  h.blk.completeAll();
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_OK);
  assert.deepEqual(
    h.blk.disk.subarray(8 * 512, 8 * 512 + 8192),
    data,
    'the device read the guest buffer from the view, not the buffer start',
  );
  const r = send(h, 0, VIRTIO_BLK_T_IN, 8, 8192);
  kick(h, 0);
  h.blk.completeAll();
  assert.equal(statusOf(h, r), VIRTIO_BLK_S_OK);
  assert.deepEqual(guest.bytes(r.data, 8192), data);
  // The ring, header and status writes went through views that honour the offset too.
  for (const region of guest.regions)
    assert.ok(
      guardBytes(region.memory).every((b) => b === 0xee),
      'bytes around a region untouched',
    );
});

test('GuestMemory and DriverRing views start at the region view, not at its buffer', () => {
  const backing = new Uint8Array(0x3000);
  const memory = backing.subarray(0x100, 0x100 + 0x2000);
  const mem = new GuestMemory([{ guestAddr: 0x10000, size: 0x2000, frontendAddr: 0x50000, memory }]);
  mem.views[0]!.setUint32(0, 0xdeadbeef, true);
  assert.deepEqual([...backing.subarray(0x100, 0x104)], [0xef, 0xbe, 0xad, 0xde]);
  const ring = new DriverRing(memory, 0x10000, 0x10000 + 0x1000, 8, { eventIdx: true });
  ring.addChain([{ addr: 0x10000, len: 16, write: false }]);
  ring.publish();
  assert.ok(
    backing.subarray(0, 0x100).every((b) => b === 0),
    'nothing written before the view',
  );
  assert.ok(
    backing.subarray(0x1100, 0x1100 + 16).some((b) => b !== 0),
    'the descriptor landed at view offset 0x1000',
  );
  assert.throws(
    () => new DriverRing(backing.subarray(2), 0, 0x1000, 8, { eventIdx: false }),
    /does not fit/,
    'a view the ring cannot align in is refused',
  );
});

test('a region whose view is not 4-byte aligned in its buffer stops the queue with a sentence, not a crash', () => {
  const blk = new MemoryBlockDevice();
  const dev = new VirtioBlkDevice(blk, { numQueues: 1 });
  dev.setFeatures(dev.deviceFeatures);
  const memory = new Uint8Array(new SharedArrayBuffer((1 << 16) + 2)).subarray(2);
  const reasons: string[] = [];
  dev.onBroken = (_q, reason) => reasons.push(reason);
  dev.setMemory([{ guestAddr: 0, size: 1 << 16, frontendAddr: 0x7000_0000, memory }]);
  dev.startQueue(0, { size: 8, descAddr: 0x1000, availAddr: 0x2000, usedAddr: 0x3000, lastAvailIdx: 0, notify: () => {} });
  assert.equal(reasons.length, 1);
  assert.match(reasons[0]!, /not aligned in this process's mapping/);
});
