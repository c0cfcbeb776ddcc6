// Property tests over random ring contents, bounded. The properties live in
// tests/fuzz/targets/virtio.ts and are shared with `npm run fuzz` (long runs).
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../electron/dataplane/virtio/guest-memory.js';
import { hostileRings, mutatedRings, validTraffic, guestMemoryFind } from '../fuzz/targets/virtio.js';
import { runTarget } from '../fuzz/target.js';

test('hostile rings: no exception escapes, no out-of-bounds access, only queue 0 stops', async () => {
  await runTarget(hostileRings, { numRuns: hostileRings.bounded });
});

test('mutated well-formed rings: requests reach the block layer, errors stay contained', async (t) => {
  const r = await runTarget(mutatedRings, { numRuns: mutatedRings.bounded });
  t.diagnostic(`${r.runs} cases: ${r.stats.served} requests reached the block layer, ${r.stats.broken} queues stopped`);
});

test('valid random traffic (any segmentation, direct or indirect) round-trips its data', async () => {
  await runTarget(validTraffic, { numRuns: validTraffic.bounded });
});

test('GuestMemory.find accepts exactly the ranges inside one region', async () => {
  await runTarget(guestMemoryFind, { numRuns: guestMemoryFind.bounded });
  const regions = [
    { guestAddr: 0x1000, size: 0x1000, frontendAddr: 0x9000, memory: new Uint8Array(0x1000) },
    { guestAddr: 0x4000, size: 0x2000, frontendAddr: 0x20000, memory: new Uint8Array(0x2000) },
  ];
  const mem = new GuestMemory(regions);
  assert.equal(mem.find(Number.MAX_SAFE_INTEGER, 16), -1);
  assert.equal(mem.find(0x1000, Number.MAX_SAFE_INTEGER), -1);
  assert.equal(mem.find(NaN, 1), -1);
  assert.equal(mem.frontendToGuest(0x9010, 16), 0x1010);
  assert.equal(mem.frontendToGuest(0x9ff8, 16), -1);
  assert.throws(() => new GuestMemory([regions[0], { ...regions[1], guestAddr: 0x1800 }]), /overlap/);
  assert.throws(() => new GuestMemory([{ ...regions[0], memory: new Uint8Array(16) }]), /fewer than its size/);
});
