// Property targets over random ring contents: whatever a hostile guest writes, no
// exception escapes the device, nothing outside guest memory is touched (DataViews sized to each
// region throw on any out-of-bounds access, and the block test double throws on segments outside
// registered buffers; either would surface as an "internal error" reason, which must never
// happen), only the affected queue stops, and valid traffic round-trips its data.
// Run bounded by tests/unit/virtio-fuzz.test.ts and at length by `npm run fuzz`.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemory } from '../../../electron/dataplane/virtio/guest-memory.js';
import { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_S_OK } from '../../../electron/dataplane/virtio/virtio-blk.js';
import { harness, send, kick, statusOf, pattern, TestGuest, GUEST_BASE } from '../../unit/helpers/test-guest.js';
import type { FuzzTarget } from '../target.js';

const REGION = 1 << 16;
const TYPES = [0, 1, 4, 8, 11, 13, 2, 0xffffffff];

const descArb = (size: number) =>
  fc.record({
    addr: fc.oneof(
      fc.integer({ min: GUEST_BASE - 64, max: GUEST_BASE + REGION + 4096 + 64 }),
      fc.constantFrom(0, GUEST_BASE + REGION - 1, GUEST_BASE + REGION, GUEST_BASE + REGION + 4096 - 8, Number.MAX_SAFE_INTEGER),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    ),
    len: fc.oneof(fc.integer({ min: 0, max: 1100 }), fc.constantFrom(1, 16, 512, 4096, 0xffffffff)),
    flags: fc.integer({ min: 0, max: 7 }),
    next: fc.integer({ min: 0, max: size + 1 }),
  });

const hostileCase = fc.integer({ min: 0, max: 5 }).chain((log) => {
  const size = 1 << log;
  return fc.record({
    size: fc.constant(size),
    eventIdx: fc.boolean(),
    indirect: fc.boolean(),
    readOnly: fc.boolean(),
    lbs: fc.constantFrom(512, 4096),
    seed: fc.integer({ min: 1, max: 0x7fffffff }),
    headers: fc.array(
      fc.record({ type: fc.constantFrom(...TYPES), sector: fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.constant(0xffffffff)) }),
      { maxLength: 8 },
    ),
    descs: fc.array(descArb(size), { minLength: size, maxLength: size }),
    rounds: fc.array(
      fc.record({
        heads: fc.array(fc.integer({ min: 0, max: size + 2 }), { maxLength: size + 2 }),
        rewrite: fc.option(fc.tuple(fc.integer({ min: 0, max: size - 1 }), descArb(size)), { nil: undefined }),
        complete: fc.boolean(),
      }),
      { minLength: 1, maxLength: 4 },
    ),
  });
});

export const hostileRings: FuzzTarget<void> = {
  name: 'virtio-hostile-rings',
  suite: 'unit',
  bounded: 500,
  seed: 424242,
  property: () =>
    fc.property(hostileCase, (c) => {
      // Two regions with a gap, so addresses can fall between them too.
      const guest = new TestGuest(REGION, { size: 4096, gap: 4096 });
      const h = harness({
        guest,
        queues: 2,
        ringSizes: [c.size, 16],
        eventIdx: c.eventIdx,
        features: features(c),
        blk: { readOnly: c.readOnly, logicalBlockSize: c.lbs },
      });
      const ring = h.rings[0];
      // Random bytes everywhere the rings are not, then a few plausible headers at random spots.
      const rnd = pattern(REGION - 16384, c.seed);
      guest.bytes(GUEST_BASE + 16384, rnd.length).set(rnd);
      c.headers.forEach((hd, k) => {
        const v = guest.view(GUEST_BASE + 16384 + 512 * k, 16);
        v.setUint32(0, hd.type, true);
        v.setUint32(8, hd.sector, true);
      });
      const write = (i: number, d: { addr: number | bigint; len: number; flags: number; next: number }) => {
        ring.writeDesc(i, 0, d.len, d.flags, d.next);
        guest.view(ring.descAddr + 16 * i, 8).setBigUint64(0, BigInt(d.addr), true);
      };
      c.descs.forEach((d, i) => write(i, d));
      for (const r of c.rounds) {
        if (r.rewrite) write(r.rewrite[0], r.rewrite[1]);
        for (const head of r.heads) ring.pushAvailRaw(head);
        kick(h, 0);
        if (r.complete) h.blk.completeAll();
      }
      check(h, c.lbs);
    }),
};

const features = (c: { eventIdx: boolean; indirect: boolean }) => ~0n & ~(c.eventIdx ? 0n : 1n << 29n) & ~(c.indirect ? 0n : 1n << 28n);

/** After any run: queue 0 broke at most once with a proper sentence, and queue 1 still works. */
function check(h: ReturnType<typeof harness>, lbs: number): void {
  h.blk.completeAll();
  for (const b of h.broken) {
    assert.equal(b.queue, 0);
    assert.match(b.reason, /^Queue 0 stopped: .+\.$/);
    assert.doesNotMatch(b.reason, /internal error/);
  }
  assert.ok(h.broken.length <= 1, 'a stopped queue reports once');
  const ok = send(h, 1, VIRTIO_BLK_T_IN, 0, lbs);
  kick(h, 1);
  h.blk.completeAll();
  assert.equal(statusOf(h, ok), VIRTIO_BLK_S_OK);
}

// Mostly well-formed requests with a few corrupted descriptor fields: reaches the request
// parser, the range checks and the block layer, not just the first sanity check.
const chainArb = fc.record({
  type: fc.constantFrom(...TYPES, 0, 1, 0, 1),
  sector: fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 2100 }), weight: 6 },
    { arbitrary: fc.constantFrom(0xffff_ffff_ffff_fff8n, 1n << 53n, 2047n), weight: 1 },
  ),
  dataLen: fc.constantFrom(512, 1024, 4096, 512, 4096, 8192, 0, 16, 32, 13, 20),
  pieces: fc.integer({ min: 1, max: 3 }),
  flipDirection: fc.oneof({ arbitrary: fc.constant(false), weight: 15 }, { arbitrary: fc.constant(true), weight: 1 }),
  statusLen: fc.oneof({ arbitrary: fc.constant(1), weight: 15 }, { arbitrary: fc.constantFrom(0, 2), weight: 1 }),
  indirect: fc.boolean(),
});
const mutationArb = fc.record({
  which: fc.nat(),
  field: fc.integer({ min: 0, max: 3 }),
  value: fc.oneof(fc.nat({ max: 40 }), fc.integer({ min: GUEST_BASE - 8, max: GUEST_BASE + REGION + 16 }), fc.constant(0xffffffff)),
});
const rarely = <T>(a: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary: a, weight: 1 });
const mutatedCase = fc.record({
  eventIdx: fc.boolean(),
  indirect: fc.constantFrom(true, true, true, false),
  readOnly: fc.constantFrom(false, false, false, true),
  lbs: fc.constantFrom(512, 512, 512, 4096),
  chains: fc.array(chainArb, { minLength: 1, maxLength: 10 }),
  mutations: fc.oneof(fc.constant([]), fc.array(mutationArb, { minLength: 1, maxLength: 3 })),
  extraHead: rarely(fc.nat({ max: 40 })),
  completeBetween: fc.boolean(),
});

export const mutatedRings: FuzzTarget<void> = {
  name: 'virtio-mutated-rings',
  suite: 'unit',
  bounded: 1500,
  seed: 99,
  property: (_ctx, stats) =>
    fc.property(mutatedCase, (c) => {
      const h = harness({
        queues: 2,
        ringSize: 32,
        eventIdx: c.eventIdx,
        features: features(c),
        blk: { readOnly: c.readOnly, logicalBlockSize: c.lbs, sizeBytes: 2 << 20 },
      });
      const g = h.guest;
      const ring = h.rings[0];
      const descSpots: number[] = []; // guest addresses of every descriptor written
      for (const ch of c.chains) {
        const bufs = [{ addr: g.header(ch.type, ch.sector), len: 16, write: false }];
        if (ch.dataLen) {
          const d = g.alloc(ch.dataLen, 512);
          const step = Math.ceil(ch.dataLen / ch.pieces);
          const write = (ch.type === VIRTIO_BLK_T_IN || ch.type === 8) !== ch.flipDirection;
          for (let o = 0; o < ch.dataLen; o += step) bufs.push({ addr: d + o, len: Math.min(step, ch.dataLen - o), write });
        }
        if (ch.statusLen) bufs.push({ addr: g.alloc(ch.statusLen, 1), len: ch.statusLen, write: true });
        if (ch.indirect && c.indirect) {
          const t = g.alloc(16 * bufs.length);
          if (ring.addIndirect(t, bufs) < 0) break;
          for (let k = 0; k < bufs.length; k++) descSpots.push(t + 16 * k);
        } else if (ring.addChain(bufs) < 0) break;
      }
      for (let i = 0; i < ring.size; i++) descSpots.push(ring.descAddr + 16 * i);
      for (const m of c.mutations) {
        const at = descSpots[m.which % descSpots.length];
        const v = g.view(at, 16);
        if (m.field === 0) v.setBigUint64(0, BigInt(m.value), true);
        else if (m.field === 1) v.setUint32(8, m.value, true);
        else if (m.field === 2) v.setUint16(12, m.value & 0xffff, true);
        else v.setUint16(14, m.value & 0xffff, true);
      }
      if (c.extraHead !== undefined) ring.pushAvailRaw(c.extraHead);
      kick(h, 0);
      if (c.completeBetween) h.blk.completeAll();
      kick(h, 0);
      stats.served = (stats.served ?? 0) + h.blk.log.length;
      stats.broken = (stats.broken ?? 0) + h.broken.length;
      check(h, c.lbs);
    }),
  // The generator must reach the block layer and the error paths, or the run proves little.
  after(_ctx, runs, stats) {
    const served = stats.served ?? 0;
    const broken = stats.broken ?? 0;
    assert.ok(served > runs * 0.66, `requests served: ${served} in ${runs} cases`);
    assert.ok(broken > runs / 15 && broken < runs * 0.93, `queues broken: ${broken} in ${runs} cases`);
  },
};

const trafficOp = fc.record({
  write: fc.boolean(),
  block: fc.integer({ min: 0, max: 63 }),
  blocks: fc.integer({ min: 1, max: 4 }),
  pieces: fc.integer({ min: 1, max: 5 }),
  indirect: fc.boolean(),
  seed: fc.integer({ min: 1, max: 1 << 30 }),
});

export const validTraffic: FuzzTarget<void> = {
  name: 'virtio-valid-traffic',
  suite: 'unit',
  bounded: 300,
  seed: 1717,
  property: () =>
    fc.property(fc.array(trafficOp, { minLength: 1, maxLength: 12 }), fc.boolean(), (ops, eventIdx) => {
      const h = harness({ queues: 1, ringSize: 64, eventIdx, blk: { sizeBytes: 68 * 512 } });
      const model = new Uint8Array(68 * 512);
      for (const o of ops) {
        const len = o.blocks * 512;
        if (o.write) {
          const data = pattern(len, o.seed);
          const s = send(h, 0, VIRTIO_BLK_T_OUT, o.block, data, { pieces: o.pieces, indirect: o.indirect });
          kick(h, 0);
          h.blk.completeAll();
          assert.equal(statusOf(h, s), VIRTIO_BLK_S_OK);
          model.set(data, o.block * 512);
        } else {
          const s = send(h, 0, VIRTIO_BLK_T_IN, o.block, len, { pieces: o.pieces, indirect: o.indirect });
          kick(h, 0);
          h.blk.completeAll();
          assert.equal(statusOf(h, s), VIRTIO_BLK_S_OK);
          assert.deepEqual(h.guest.bytes(s.data, len), model.subarray(o.block * 512, o.block * 512 + len));
        }
        h.rings[0].collect(() => {});
      }
      assert.deepEqual(h.broken, []);
    }),
};

const REGIONS = [
  { guestAddr: 0x1000, size: 0x1000, frontendAddr: 0x9000, memory: new Uint8Array(0x1000) },
  { guestAddr: 0x4000, size: 0x2000, frontendAddr: 0x20000, memory: new Uint8Array(0x2000) },
];

export const guestMemoryFind: FuzzTarget<GuestMemory> = {
  name: 'guest-memory-find',
  suite: 'unit',
  bounded: 200,
  setup: () => new GuestMemory(REGIONS),
  property: (mem) =>
    fc.property(fc.integer({ min: -10, max: 0x7000 }), fc.integer({ min: 0, max: 0x3000 }), (addr, len) => {
      const r = mem.find(addr, len);
      const inside = REGIONS.findIndex((g) => addr >= g.guestAddr && addr < g.guestAddr + g.size && addr + len <= g.guestAddr + g.size);
      assert.equal(r, inside);
    }),
};

export const virtioTargets = [hostileRings, mutatedRings, validTraffic, guestMemoryFind];
