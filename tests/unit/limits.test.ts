// I/O limits as text and as settings (electron/shared/limits.ts): QEMU's names, its validity rules
// (util/throttle.c throttle_is_valid) as sentences, and the model accepting only valid sets.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { IoLimits, describeLimits, hasLimits, limitsProblem, parseLimits } from '../../electron/shared/limits.js';
import { DiskPatch, type VmInfo } from '../../electron/shared/api.js';
import { writeFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { apiSetup, rejectsWith } from '../lib/api.js';

test('QEMU-style text parses to limits; byte rates take sizes; none clears', () => {
  assert.deepEqual(parseLimits('iops-read=500,bps-write=50M,bps-write-max=200M,bps-write-max-length=10,iops-size=4K'), {
    iopsRead: 500,
    bpsWrite: 50 << 20,
    bpsWriteMax: 200 << 20,
    bpsWriteMaxLength: 10,
    iopsSize: 4096,
  });
  assert.deepEqual(parseLimits('none'), {});
  assert.equal(hasLimits(parseLimits('none')), false);
  assert.equal(describeLimits({ iopsWrite: 100, iopsWriteMax: 400, iopsWriteMaxLength: 5 }), 'iops-write=100 (burst 400 for 5 s)');
});

test('each rule QEMU enforces is refused with a sentence naming the option', () => {
  const cases: Array<[string, RegExp]> = [
    ['iops-total=100,iops-read=50', /iops-total cannot be combined with iops-read/],
    ['bps-read-max=10M', /bps-read-max needs bps-read/],
    ['iops-write=100,iops-write-max=50', /cannot be lower than iops-write/],
    ['iops-write=100,iops-write-max-length=5', /iops-write-max-length needs iops-write-max/],
    ['iops-size=4K', /iops-size needs an iops limit/],
    ['iops-fast=1', /'iops-fast' is not a limit/],
    ['iops-read=-3', /not a positive number/],
    ['iops-read', /needs a value/],
    ['bps-read=10MB', /ambiguous/],
  ];
  for (const [text, why] of cases) assert.throws(() => parseLimits(text), why, text);
  assert.equal(limitsProblem({ iopsRead: 1, iopsWrite: 2, bpsTotal: 3 }), null);
});

test('the model and the disk patch accept only valid limits', () => {
  assert.equal(IoLimits.safeParse({ iopsTotal: 10, iopsRead: 5 }).success, false);
  assert.equal(IoLimits.safeParse({ iopsTotal: 10, unknown: 1 }).success, false);
  assert.equal(DiskPatch.safeParse({ limits: { bpsWrite: 1 << 20 } }).success, true);
  assert.equal(DiskPatch.safeParse({ limits: { bpsWrite: 0 } }).success, false);
});

test('disk.set keeps limits in the VM config, {} removes them, and a wrong set is refused with a sentence', async () => {
  const s = apiSetup('spindle-limits-api-');
  try {
    const img = join(s.dir, 'd0.img');
    writeFileSync(img, '');
    truncateSync(img, 1 << 20);
    const vm = (await s.router.call('vm.create', { name: 'Limited', disks: [{ path: img, limits: { iopsRead: 100 } }] })) as VmInfo;
    const id = vm.config.id;
    assert.deepEqual(vm.config.disks[0]!.limits, { iopsRead: 100 });
    const set = (await s.router.call('disk.set', {
      vmId: id,
      diskId: 'd0',
      patch: { limits: { bpsWrite: 1 << 20, bpsWriteMax: 4 << 20 } },
    })) as VmInfo;
    assert.deepEqual(set.config.disks[0]!.limits, { bpsWrite: 1 << 20, bpsWriteMax: 4 << 20 });
    await rejectsWith(
      s.router.call('disk.set', { vmId: id, diskId: 'd0', patch: { limits: { iopsTotal: 10, iopsWrite: 5 } } }),
      'INVALID_ARGUMENT',
      /iops-total cannot be combined with iops-read or iops-write/,
    );
    const kept = (await s.router.call('vm.get', { id })) as VmInfo;
    assert.deepEqual(kept.config.disks[0]!.limits, { bpsWrite: 1 << 20, bpsWriteMax: 4 << 20 }, 'the refused set changed nothing');
    const cleared = (await s.router.call('disk.set', { vmId: id, diskId: 'd0', patch: { limits: {} } })) as VmInfo;
    assert.equal(hasLimits(cleared.config.disks[0]!.limits), false);
  } finally {
    await s.cleanup();
  }
});
