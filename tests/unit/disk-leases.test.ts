// The disk-lease registry (electron/host/disks/disk-leases.ts) that the VM manager and the aio
// comparison both consult before they serve or write a disk.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskLeases } from '../../electron/host/disks/disk-leases.js';
import { VmManager } from '../../electron/host/vm/manager.js';
import { VmStore } from '../../electron/host/vm/store.js';

test('a path has one holder at a time; release gives it back once, and an old lease never frees a newer one', () => {
  const leases = new DiskLeases();
  assert.equal(leases.holder('/a'), null);
  const bench = leases.claim('/a', { kind: 'bench' });
  assert.deepEqual(leases.holder('/a'), { kind: 'bench' });
  assert.equal(leases.holder('/b'), null, 'other paths are free');
  assert.throws(() => leases.claim('/a', { kind: 'bench' }), /\/a is leased already \(bench\)/);
  bench.release();
  assert.equal(leases.holder('/a'), null);
  const vm = leases.claim('/a', { kind: 'vm', vmId: 'v', diskId: 'd0', vmName: () => 'V', vmState: () => 'running' });
  bench.release();
  assert.equal(leases.holder('/a')?.kind, 'vm', 'a released lease released again frees nothing');
  vm.release();
  assert.equal(leases.holder('/a'), null);
});

test('the VM manager refuses to start a VM, or to add a disk, on a path the comparison holds, with the comparison named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-leases-'));
  try {
    const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
    const image = join(dir, 'a.img');
    writeFileSync(image, Buffer.alloc(1 << 20));
    const manager = new VmManager({ store: new VmStore(join(dir, 'vms')), env, qemuBinary: '/bin/true' });
    const vm = await manager.create({
      name: 'leased',
      cpus: 1,
      memoryMiB: 64,
      firmware: 'bios',
      boot: { kind: 'disk' },
      disks: [{ path: image }],
      network: { user: false },
      display: 'none',
    });
    const other = await manager.create({
      name: 'other',
      cpus: 1,
      memoryMiB: 64,
      firmware: 'bios',
      boot: { kind: 'disk' },
      disks: [],
      network: { user: false },
      display: 'none',
    });
    const lease = manager.leases.claim(image, { kind: 'bench' });
    const busy = `${image} is being measured by the aio comparison: wait for it to finish or cancel it first.`;
    await assert.rejects(manager.start(vm.config.id), (e: Error & { code?: string }) => e.code === 'DEVICE_BUSY' && e.message === busy);
    await assert.rejects(
      manager.attachDisk(other.config.id, { path: image }),
      (e: Error & { code?: string }) => e.code === 'DEVICE_BUSY' && e.message === busy,
    );
    assert.equal(manager.get(vm.config.id).state, 'stopped');
    assert.deepEqual(manager.leases.holder(image), { kind: 'bench' }, 'the refusals took nothing');
    lease.release();
    assert.equal(
      (await manager.attachDisk(other.config.id, { path: image })).config.disks[0]!.path,
      image,
      'free again: a stopped VM may list it',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
