// virtio-blk request handling, config space and queues, driven through hand-built rings in
// shared memory (the block layer is the MemoryBlockDevice test double, see helpers/).
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { BlockOp, WRITE_ZEROES_MAY_UNMAP } from '../../electron/dataplane/block/types.js';
import {
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_UNSUPP,
  VirtioBlkDevice,
} from '../../electron/dataplane/virtio/virtio-blk.js';
import { MemoryBlockDevice } from './helpers/memory-block-device.js';
import { harness, send, kick, statusOf, pattern, TestGuest, GUEST_BASE } from './helpers/test-guest.js';

const dwz = (sector: bigint, sectors: number, flags: number) => {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, sector, true);
  v.setUint32(8, sectors, true);
  v.setUint32(12, flags, true);
  return b;
};

test('features: the advertised set, RO only for read-only disks, discard/write-zeroes only when supported', () => {
  const bits = (f: bigint) => [...Array(64).keys()].filter((i) => (f >> BigInt(i)) & 1n);
  const rw = new VirtioBlkDevice(new MemoryBlockDevice(), { numQueues: 1 });
  assert.deepEqual(bits(rw.deviceFeatures), [1, 2, 6, 9, 10, 11, 12, 13, 14, 28, 29, 32]);
  const ro = new VirtioBlkDevice(new MemoryBlockDevice({ readOnly: true }), { numQueues: 1 });
  assert.deepEqual(bits(ro.deviceFeatures), [1, 2, 5, 6, 9, 10, 11, 12, 28, 29, 32]);
  const plain = new VirtioBlkDevice(new MemoryBlockDevice({ supportsDiscard: false, supportsWriteZeroes: false }), { numQueues: 1 });
  assert.equal((plain.deviceFeatures >> 13n) & 3n, 0n);
  assert.throws(() => new VirtioBlkDevice(new MemoryBlockDevice(), { numQueues: 0 }), /number of queues/);
});

test('config space bytes follow struct virtio_blk_config', () => {
  const blk = new MemoryBlockDevice({ sizeBytes: 8 << 20, logicalBlockSize: 512, physicalBlockSize: 4096, writeCache: true });
  const dev = new VirtioBlkDevice(blk, { numQueues: 3, segMax: 126, sizeMax: 1 << 20 });
  const c = dev.readConfig(0, 60);
  const v = new DataView(c.buffer);
  assert.equal(v.getBigUint64(0, true), BigInt((8 << 20) / 512), 'capacity in 512-byte sectors');
  assert.equal(v.getUint32(8, true), 1 << 20, 'size_max');
  assert.equal(v.getUint32(12, true), 126, 'seg_max');
  assert.equal(v.getUint32(16, true), 0, 'geometry');
  assert.equal(v.getUint32(20, true), 512, 'blk_size');
  assert.equal(c[24], 3, 'physical_block_exp: 4096 = 512 << 3');
  assert.equal(c[25], 0, 'alignment_offset');
  assert.equal(v.getUint16(26, true), 8, 'min_io_size in logical blocks');
  assert.equal(c[32], 1, 'writeback');
  assert.equal(v.getUint16(34, true), 3, 'num_queues');
  assert.deepEqual(
    [36, 40, 44, 48, 52].map((o) => v.getUint32(o, true)),
    [65536, 1, 1, 65536, 1],
  );
  assert.equal(c[56], 1, 'write_zeroes_may_unmap');
  // Partial and out-of-range reads: the bytes asked for, zeros past the struct.
  assert.deepEqual([...dev.readConfig(20, 4)], [0, 2, 0, 0]);
  assert.deepEqual([...dev.readConfig(58, 4)], [0, 0, 0, 0]);
  const big = new VirtioBlkDevice(new MemoryBlockDevice({ sizeBytes: 1 << 20, logicalBlockSize: 4096, physicalBlockSize: 4096 }), {
    numQueues: 1,
  });
  const b = new DataView(big.readConfig(0, 60).buffer);
  assert.equal(b.getUint32(20, true), 4096);
  assert.equal(b.getUint8(24), 0);
  assert.equal(b.getUint32(44, true), 8, 'discard alignment = 4096 / 512 sectors');
});

test("CONFIG_WCE: the guest toggles the write cache; reset restores the cache mode's setting", async () => {
  const h = harness({ queues: 1, blk: { writeCache: true } });
  assert.equal(h.dev.readConfig(32, 1)[0], 1);
  h.dev.writeConfig(32, Uint8Array.of(0));
  assert.equal(h.blk.writeCache, false);
  assert.equal(h.dev.readConfig(32, 1)[0], 0);
  h.dev.writeConfig(30, Uint8Array.of(9, 9, 1, 9)); // covers 30..33: only byte 32 counts
  assert.equal(h.blk.writeCache, true);
  assert.equal(
    h.dev.readConfig(0, 8).some((x) => x === 9),
    false,
  );
  h.dev.writeConfig(32, Uint8Array.of(0));
  await h.dev.reset();
  assert.equal(h.blk.writeCache, true);
});

test('OUT then IN: data goes to the disk and back through guest memory', () => {
  const h = harness({ queues: 1 });
  const data = pattern(4096, 7);
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 16, data);
  kick(h, 0);
  assert.equal(h.blk.submits, 1);
  const req = h.blk.log[0];
  assert.equal(req.op, BlockOp.Write);
  assert.equal(req.offset, 16 * 512);
  assert.deepEqual(req.segments, [{ id: 0, offset: w.data - GUEST_BASE, length: 4096 }], 'zero copy: a region id and offset');
  assert.equal(statusOf(h, w), 0xff, 'status untouched until completion');
  h.blk.completeAll();
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_OK);
  assert.deepEqual(h.blk.disk.subarray(8192, 8192 + 4096), data);
  const r = send(h, 0, VIRTIO_BLK_T_IN, 16, 4096);
  kick(h, 0);
  h.blk.completeAll();
  assert.equal(statusOf(h, r), VIRTIO_BLK_S_OK);
  assert.deepEqual(h.guest.bytes(r.data, 4096), data);
  const used: [number, number][] = [];
  h.rings[0].collect((id, len) => used.push([id, len]));
  assert.deepEqual(
    used,
    [
      [w.head, 1],
      [r.head, 4097],
    ],
    'used len counts data-in plus the status byte',
  );
});

test('multi-segment and indirect chains become one request with several segments', () => {
  const h = harness({ queues: 1 });
  const data = pattern(3 * 1024, 3);
  const a = send(h, 0, VIRTIO_BLK_T_OUT, 0, data, { pieces: 3 });
  const b = send(h, 0, VIRTIO_BLK_T_OUT, 8, data, { pieces: 6, indirect: true });
  const c = send(h, 0, VIRTIO_BLK_T_IN, 0, 3072, { pieces: 2, indirect: true });
  kick(h, 0);
  assert.equal(h.blk.submits, 1, 'one submit for the whole batch');
  assert.deepEqual(
    h.blk.log.map((r) => r.segments.length),
    [3, 6, 2],
  );
  h.blk.completeAll();
  for (const s of [a, b, c]) assert.equal(statusOf(h, s), VIRTIO_BLK_S_OK);
  assert.deepEqual(h.blk.disk.subarray(0, 3072), data);
  assert.deepEqual(h.blk.disk.subarray(4096, 4096 + 3072), data);
});

test('a header split across descriptors and a data buffer shared with the header are read correctly', () => {
  const h = harness({ queues: 1 });
  const g = h.guest;
  // Header in two descriptors of 5 and 11 bytes, then header+data? no: the data follows in the second.
  const buf = g.alloc(16 + 512, 512);
  const v = g.view(buf, 16);
  v.setUint32(0, VIRTIO_BLK_T_OUT, true);
  v.setBigUint64(8, 2n, true);
  g.bytes(buf + 16, 512).set(pattern(512, 5));
  const st = g.status();
  h.rings[0].addChain([
    { addr: buf, len: 5, write: false },
    { addr: buf + 5, len: 11 + 512, write: false },
    { addr: st, len: 1, write: true },
  ]);
  kick(h, 0);
  assert.deepEqual(h.blk.log[0].segments, [{ id: 0, offset: buf + 16 - GUEST_BASE, length: 512 }]);
  assert.equal(h.blk.log[0].offset, 1024);
  h.blk.completeAll();
  assert.equal(g.bytes(st, 1)[0], VIRTIO_BLK_S_OK);
});

test('a data buffer that runs from one guest region into the adjacent one is split into two segments', () => {
  const guest = new TestGuest(1 << 20, { size: 1 << 16, gap: 0 });
  const h = harness({ queues: 1, guest });
  const hdr = guest.header(VIRTIO_BLK_T_IN, 0);
  const st = guest.status();
  const start = GUEST_BASE + (1 << 20) - 512;
  h.rings[0].addChain([
    { addr: hdr, len: 16, write: false },
    { addr: start, len: 1024, write: true },
    { addr: st, len: 1, write: true },
  ]);
  kick(h, 0);
  assert.deepEqual(h.blk.log[0].segments, [
    { id: 0, offset: (1 << 20) - 512, length: 512 },
    { id: 1, offset: 0, length: 512 },
  ]);
  assert.deepEqual(h.broken, []);
});

test('FLUSH goes to the block layer; GET_ID returns the serial without copying past 20 bytes', () => {
  const h = harness({ queues: 1, dev: { serial: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ' } });
  const f = send(h, 0, VIRTIO_BLK_T_FLUSH, 0);
  const id = send(h, 0, VIRTIO_BLK_T_GET_ID, 0, 64);
  kick(h, 0);
  assert.equal(h.blk.log.length, 1);
  assert.equal(h.blk.log[0].op, BlockOp.Flush);
  assert.equal(statusOf(h, id), VIRTIO_BLK_S_OK, 'GET_ID completes without the block layer');
  assert.equal(Buffer.from(h.guest.bytes(id.data, 21)).toString('latin1'), 'ABCDEFGHIJKLMNOPQRST\0', 'exactly 20 bytes, no terminator');
  h.blk.completeAll();
  assert.equal(statusOf(h, f), VIRTIO_BLK_S_OK);
  const used: number[] = [];
  h.rings[0].collect((head, len) => head === id.head && used.push(len));
  assert.deepEqual(used, [21]);

  const s = harness({ queues: 1, dev: { serial: 'disk-1' } });
  const g = send(s, 0, VIRTIO_BLK_T_GET_ID, 0, 20);
  s.guest.bytes(g.data, 20).fill(0xee);
  kick(s, 0);
  assert.equal(Buffer.from(s.guest.bytes(g.data, 20)).toString('latin1'), 'disk-1'.padEnd(20, '\0'));
});

test('DISCARD and WRITE_ZEROES: one range, flags checked, limits enforced', () => {
  const h = harness({ queues: 1, ringSize: 32 });
  h.blk.disk.fill(0xaa);
  const d = send(h, 0, VIRTIO_BLK_T_DISCARD, 0, dwz(8n, 8, 0));
  const z = send(h, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, dwz(64n, 16, 1));
  const dUnmap = send(h, 0, VIRTIO_BLK_T_DISCARD, 0, dwz(8n, 8, 1));
  const zBadFlag = send(h, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, dwz(8n, 8, 2));
  const two = new Uint8Array(32);
  two.set(dwz(0n, 1, 0));
  two.set(dwz(8n, 1, 0), 16);
  const twoSeg = send(h, 0, VIRTIO_BLK_T_DISCARD, 0, two);
  const short = send(h, 0, VIRTIO_BLK_T_DISCARD, 0, new Uint8Array(12));
  const tooMany = send(h, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, dwz(0n, 65537, 0));
  const past = send(h, 0, VIRTIO_BLK_T_DISCARD, 0, dwz(BigInt(h.blk.sizeBytes / 512 - 4), 8, 0));
  kick(h, 0);
  assert.deepEqual(
    h.blk.log.map((r) => [r.op, r.offset, r.length, r.flags]),
    [
      [BlockOp.Discard, 4096, 4096, 0],
      [BlockOp.WriteZeroes, 32768, 8192, WRITE_ZEROES_MAY_UNMAP],
    ],
  );
  assert.equal(statusOf(h, dUnmap), VIRTIO_BLK_S_UNSUPP, 'discard with the unmap flag');
  assert.equal(statusOf(h, zBadFlag), VIRTIO_BLK_S_UNSUPP, 'write-zeroes with an unknown flag');
  assert.equal(statusOf(h, twoSeg), VIRTIO_BLK_S_UNSUPP, 'more segments than max_discard_seg');
  assert.equal(statusOf(h, short), VIRTIO_BLK_S_IOERR, 'payload not a multiple of 16 bytes');
  assert.equal(statusOf(h, tooMany), VIRTIO_BLK_S_IOERR, 'more sectors than max_write_zeroes_sectors');
  assert.equal(statusOf(h, past), VIRTIO_BLK_S_IOERR, 'range past capacity');
  h.blk.completeAll();
  assert.equal(statusOf(h, d), VIRTIO_BLK_S_OK);
  assert.equal(statusOf(h, z), VIRTIO_BLK_S_OK);
  assert.ok(h.blk.disk.subarray(4096, 8192).every((x) => x === 0));
  assert.ok(h.blk.disk.subarray(32768, 40960).every((x) => x === 0));
  assert.equal(h.blk.disk[8192], 0xaa);
  assert.deepEqual(h.broken, []);
});

test('discard and write-zeroes the driver did not negotiate get UNSUPP', () => {
  const h = harness({ queues: 1, features: new VirtioBlkDevice(new MemoryBlockDevice(), { numQueues: 1 }).deviceFeatures & ~(3n << 13n) });
  const d = send(h, 0, VIRTIO_BLK_T_DISCARD, 0, dwz(0n, 8, 0));
  const z = send(h, 0, VIRTIO_BLK_T_WRITE_ZEROES, 0, dwz(0n, 8, 0));
  kick(h, 0);
  assert.equal(statusOf(h, d), VIRTIO_BLK_S_UNSUPP);
  assert.equal(statusOf(h, z), VIRTIO_BLK_S_UNSUPP);
  assert.equal(h.blk.log.length, 0);
});

test('unknown request types get UNSUPP and the queue goes on', () => {
  const h = harness({ queues: 1, ringSize: 32 });
  const types = [2, 3, 5, 14, 0x80000000, 0xffffffff];
  const sent = types.map((t) => send(h, 0, t, 0, 512));
  kick(h, 0);
  for (const s of sent) assert.equal(statusOf(h, s), VIRTIO_BLK_S_UNSUPP);
  assert.deepEqual(h.broken, []);
  assert.equal(
    h.rings[0].collect(() => {}),
    types.length,
  );
  const ok = send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  kick(h, 0);
  h.blk.completeAll();
  assert.equal(statusOf(h, ok), VIRTIO_BLK_S_OK);
});

test('sector ranges past capacity, wrapping 64 bits or not block aligned get IOERR without reaching the disk', () => {
  const h = harness({ queues: 1, ringSize: 32, blk: { sizeBytes: 1 << 20, logicalBlockSize: 4096 } });
  const cap = (1 << 20) / 512;
  const bad = [
    send(h, 0, VIRTIO_BLK_T_IN, cap, 4096),
    send(h, 0, VIRTIO_BLK_T_IN, cap - 4, 4096),
    send(h, 0, VIRTIO_BLK_T_OUT, 0xffff_ffff_ffff_fff8n, new Uint8Array(4096)),
    send(h, 0, VIRTIO_BLK_T_OUT, 1n << 55n, new Uint8Array(4096)),
    send(h, 0, VIRTIO_BLK_T_IN, 1, 4096), // not aligned to the 4096-byte logical block
    send(h, 0, VIRTIO_BLK_T_IN, 0, 512), // length not a multiple of the logical block
  ];
  const last = send(h, 0, VIRTIO_BLK_T_IN, cap - 8, 4096);
  kick(h, 0);
  for (const s of bad) assert.equal(statusOf(h, s), VIRTIO_BLK_S_IOERR);
  assert.equal(h.blk.log.length, 1);
  assert.equal(h.blk.log[0].offset, (1 << 20) - 4096, 'the last block is still readable');
  h.blk.completeAll();
  assert.equal(statusOf(h, last), VIRTIO_BLK_S_OK);
});

test('read-only disk: writes get IOERR, reads and flushes work', () => {
  const h = harness({ queues: 1, blk: { readOnly: true } });
  const w = send(h, 0, VIRTIO_BLK_T_OUT, 0, new Uint8Array(512));
  const r = send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  const f = send(h, 0, VIRTIO_BLK_T_FLUSH, 0);
  kick(h, 0);
  assert.equal(statusOf(h, w), VIRTIO_BLK_S_IOERR);
  assert.deepEqual(
    h.blk.log.map((x) => x.op),
    [BlockOp.Read, BlockOp.Flush],
  );
  h.blk.completeAll();
  assert.equal(statusOf(h, r), VIRTIO_BLK_S_OK);
  assert.equal(statusOf(h, f), VIRTIO_BLK_S_OK);
});

test('block layer errors: -errno becomes IOERR, -EOPNOTSUPP becomes UNSUPP', () => {
  const h = harness({ queues: 1 });
  h.blk.failOp.set(BlockOp.Read, -5);
  h.blk.failOp.set(BlockOp.Discard, -95);
  const r = send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  const d = send(h, 0, VIRTIO_BLK_T_DISCARD, 0, dwz(0n, 1, 0));
  kick(h, 0);
  h.blk.completeAll();
  assert.equal(statusOf(h, r), VIRTIO_BLK_S_IOERR);
  assert.equal(statusOf(h, d), VIRTIO_BLK_S_UNSUPP);
});

test('a block layer whose submit() throws fails that batch with IOERR and the queue goes on', () => {
  const h = harness({ queues: 1 });
  const orig = h.blk.submit.bind(h.blk);
  h.blk.submit = () => {
    throw new Error('engine closed');
  };
  const r = send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  const errors: string[] = [];
  const saved = console.error;
  console.error = (m: string) => errors.push(m);
  try {
    kick(h, 0);
  } finally {
    console.error = saved;
  }
  assert.equal(statusOf(h, r), VIRTIO_BLK_S_IOERR);
  assert.match(errors[0], /engine closed/);
  h.blk.submit = orig;
  (h.blk as unknown as { building: unknown[] }).building = [];
  const ok = send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  kick(h, 0);
  h.blk.completeAll();
  assert.equal(statusOf(h, ok), VIRTIO_BLK_S_OK);
});

test('batching: one submit per kick, one notification per completion batch', () => {
  const h = harness({ queues: 1, ringSize: 64 });
  const sent = Array.from({ length: 20 }, (_, i) => send(h, 0, VIRTIO_BLK_T_IN, i * 8, 4096));
  kick(h, 0);
  assert.equal(h.blk.submits, 1);
  assert.equal(h.blk.log.length, 20);
  assert.equal(h.notifies[0], 0);
  h.blk.completeAll();
  assert.equal(h.notifies[0], 1);
  assert.equal(h.rings[0].usedIdx(), 20);
  for (const s of sent) assert.equal(statusOf(h, s), VIRTIO_BLK_S_OK);
});

test('EVENT_IDX: the device writes avail_event and notifies only when used_event is crossed', () => {
  const h = harness({ queues: 1, ringSize: 64 });
  const ring = h.rings[0];
  send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  kick(h, 0);
  assert.equal(ring.availEvent(), 2, 'avail_event = next avail index the device will read');
  // used_event starts at 0: crossing 0 -> 2 includes entry 0, so one interrupt.
  h.blk.completeAll();
  assert.equal(h.notifies[0], 1);
  ring.collect(() => {}); // sets used_event = 2
  ring.setInterrupts(false); // used_event = 1: already passed, so no interrupt for a while
  for (let i = 0; i < 3; i++) {
    send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
    kick(h, 0);
    h.blk.completeAll();
  }
  assert.equal(h.notifies[0], 1, 'suppressed');
  ring.collect(() => {}); // used_event = 5
  send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  kick(h, 0);
  h.blk.completeAll();
  assert.equal(h.notifies[0], 2, 'used idx 5 -> 6 crosses used_event 5');
  // The driver publishing new chains: it kicks only when crossing avail_event.
  send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  assert.equal(ring.publish(), true);
  send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  assert.equal(ring.publish(), false, 'the device has not caught up: no second kick needed');
});

test('without EVENT_IDX the device honours VRING_AVAIL_F_NO_INTERRUPT', () => {
  const h = harness({ queues: 1, eventIdx: false });
  h.rings[0].setInterrupts(false);
  send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  kick(h, 0);
  h.blk.completeAll();
  assert.equal(h.notifies[0], 0);
  h.rings[0].setInterrupts(true);
  send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  kick(h, 0);
  h.blk.completeAll();
  assert.equal(h.notifies[0], 1);
});

test("multi-queue: each queue's completions go to its own ring and interrupt", () => {
  const h = harness({ queues: 4 });
  const sent = [0, 1, 2, 3].map((q) => send(h, q, VIRTIO_BLK_T_OUT, q * 8, pattern(4096, q + 1)));
  for (const q of [3, 1, 0, 2]) kick(h, q);
  assert.equal(h.blk.submits, 4, 'one submit per drained queue');
  h.blk.completeAll();
  assert.deepEqual(h.notifies, [1, 1, 1, 1], 'one completion batch, one notification per queue');
  sent.forEach((s, q) => {
    assert.equal(statusOf(h, s), VIRTIO_BLK_S_OK);
    assert.equal(h.rings[q].usedIdx(), 1);
    assert.deepEqual(h.blk.disk.subarray(q * 4096, q * 4096 + 4096), pattern(4096, q + 1));
  });
});

test('the default queue count is one per host CPU', async () => {
  const { availableParallelism } = await import('node:os');
  assert.equal(new VirtioBlkDevice(new MemoryBlockDevice()).numQueues, availableParallelism());
});

test('stopQueue waits for in-flight requests and returns the next avail index; the queue can restart there', async () => {
  const h = harness({ queues: 1 });
  send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  send(h, 0, VIRTIO_BLK_T_IN, 8, 512);
  kick(h, 0);
  let resolved: number | null = null;
  const p = h.dev.stopQueue(0).then((n) => {
    resolved = n;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(resolved, null, 'still draining');
  // A kick to a stopped queue is ignored.
  send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  kick(h, 0);
  assert.equal(h.blk.log.length, 2);
  h.blk.completeAll();
  await p;
  assert.equal(resolved, 2);
  const r = h.rings[0];
  h.dev.startQueue(0, {
    size: r.size,
    descAddr: r.descAddr,
    availAddr: r.availAddr,
    usedAddr: r.usedAddr,
    lastAvailIdx: 2,
    notify: () => {},
  });
  h.dev.kick(0);
  assert.equal(h.blk.log.length, 3, 'the chain added while stopped is served after restart');
});

test('reset drains, forgets memory and features, and clears the broken state', async () => {
  const h = harness({ queues: 1 });
  h.rings[0].pushAvailRaw(99);
  kick(h, 0);
  assert.equal(h.dev.broken, true);
  await h.dev.reset();
  assert.equal(h.dev.broken, false);
  assert.equal(h.dev.ackedFeatures, 0n);
  assert.equal(h.blk.buffers.size, 0, 'memory regions unregistered from the block layer');
  assert.equal(await h.dev.stopQueue(0), 0);
});

test('a guest that refills the ring during a drain is served in bounded passes, then after yielding', async () => {
  const h = harness({ queues: 1, ringSize: 64 });
  const ring = h.rings[0];
  let refills = 0;
  // Each notification-free drain pass sees new GET_ID chains (completed without the block layer):
  // simulate a vCPU that re-adds them whenever the device publishes used entries.
  const realPush = ring.publish.bind(ring);
  const id = send(h, 0, 8, 0, 20);
  ring.publish();
  const vq = (h.dev as unknown as { queues: { vq: { armKick(): boolean } }[] }).queues[0].vq;
  const arm = vq.armKick.bind(vq);
  vq.armKick = () => {
    if (refills < 20) {
      refills++;
      send(h, 0, 8, 0, 20);
      realPush();
    }
    return arm();
  };
  h.dev.kick(0);
  assert.equal(refills, 8, 'stops after 8 passes in one go');
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.equal(refills, 20, 'and carries on after yielding to the event loop');
  assert.equal(statusOf(h, id), 0);
  assert.deepEqual(h.broken, []);
});
