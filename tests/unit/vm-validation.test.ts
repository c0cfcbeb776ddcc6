// Through the API router (what the UI and the CLI both get): VM names are
// unique ignoring case, boot files must be files, and a VM that another Spindle process runs
// (its run lock held: electron/host/vm/run-lock.ts) is neither started nor changed from here.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { apiSetup, rejectsWith } from '../lib/api.js';
import { holdLock } from '../lib/lock-holder.js';
import { type VmInfo } from '../../electron/shared/api.js';
import { vmNameKey, vmNamed } from '../../electron/shared/model.js';
import { VmStore } from '../../electron/host/vm/store.js';
import { vmConfigDir } from '../../electron/host/vm/paths.js';

test('names compare ignoring case, surrounding blanks and Unicode compatibility forms', () => {
  assert.equal(vmNameKey(' Demo '), vmNameKey('dEMO'));
  assert.equal(vmNameKey('ＤＥＭＯ'), vmNameKey('demo'));
  assert.notEqual(vmNameKey('demo 2'), vmNameKey('demo'));
  const vms = [
    { id: 'demo', name: 'Demo' },
    { id: 'web', name: 'Web' },
  ];
  assert.equal(vmNamed(vms, 'DEMO')?.id, 'demo');
  assert.equal(vmNamed(vms, 'demo', 'demo'), undefined, 'a VM does not collide with itself');
  assert.equal(vmNamed(vms, 'mail'), undefined);
});

test('a taken name is refused with NAME_TAKEN at creation and at rename; renaming to another case of its own name is fine', async () => {
  const s = apiSetup('spindle-names-');
  try {
    const a = (await s.router.call('vm.create', { name: 'Build Box' })) as VmInfo;
    for (const name of ['Build Box', 'build box', 'BUILD BOX', '  Build Box  ', 'Ｂｕｉｌｄ Ｂｏｘ']) {
      await rejectsWith(
        s.router.call('vm.create', { name }),
        'NAME_TAKEN',
        /^There is already a VM named 'Build Box'.*; choose another name\.$/,
      );
    }
    const b = (await s.router.call('vm.create', { name: 'Web' })) as VmInfo;
    await rejectsWith(
      s.router.call('vm.update', { id: b.config.id, patch: { name: 'build BOX' } }),
      'NAME_TAKEN',
      /'Build Box' \(names are compared ignoring letter case\)/,
    );
    const renamed = (await s.router.call('vm.update', { id: a.config.id, patch: { name: 'BUILD box' } })) as VmInfo;
    assert.equal(renamed.config.name, 'BUILD box');
    const { vms } = (await s.router.call('vm.list', {})) as { vms: VmInfo[] };
    assert.deepEqual(vms.map((v) => v.config.name).sort(), ['BUILD box', 'Web']);
    // The store refuses too (any writer, not only the manager).
    assert.throws(
      () => new VmStore(vmConfigDir(s.env)).create({ ...b.config, id: 'web-2', name: 'WEB' }),
      (e: Error & { code?: string }) => e.code === 'NAME_TAKEN',
    );
  } finally {
    await s.cleanup();
  }
});

test('boot files: an ISO or a kernel that is a directory, or an ISO that is a character device, is refused at creation and update', async () => {
  const s = apiSetup('spindle-boot-');
  try {
    const isoDir = join(s.dir, 'isos');
    mkdirSync(isoDir);
    const kernel = join(s.dir, 'vmlinuz');
    writeFileSync(kernel, 'kernel');
    await rejectsWith(
      s.router.call('vm.create', { name: 'x', boot: { kind: 'iso', path: isoDir } }),
      'IS_DIRECTORY',
      /The ISO image .*isos is a directory; give the ISO image file itself\./,
    );
    await rejectsWith(
      s.router.call('vm.create', { name: 'x', boot: { kind: 'kernel', kernel: isoDir } }),
      'IS_DIRECTORY',
      /The kernel .*isos is a directory/,
    );
    await rejectsWith(
      s.router.call('vm.create', { name: 'x', boot: { kind: 'kernel', kernel, initrd: isoDir } }),
      'IS_DIRECTORY',
      /The initrd .*isos is a directory/,
    );
    await rejectsWith(
      s.router.call('vm.create', { name: 'x', boot: { kind: 'iso', path: '/dev/null' } }),
      'INVALID_ARGUMENT',
      /The ISO image \/dev\/null is not a regular file or a CD\/DVD drive\./,
    );
    const vm = (await s.router.call('vm.create', { name: 'x', boot: { kind: 'kernel', kernel } })) as VmInfo;
    await rejectsWith(s.router.call('vm.update', { id: vm.config.id, patch: { boot: { kind: 'iso', path: isoDir } } }), 'IS_DIRECTORY');
    const { vms } = (await s.router.call('vm.list', {})) as { vms: VmInfo[] };
    assert.deepEqual(
      vms.map((v) => v.config.boot),
      [{ kind: 'kernel', kernel, cmdline: '' }],
      'nothing else was written',
    );
  } finally {
    await s.cleanup();
  }
});

test('a VM whose run lock another process holds shows where it runs and is not started, changed or deleted here', async () => {
  const s = apiSetup('spindle-elsewhere-');
  const img = join(s.dir, 'a.img');
  writeFileSync(img, '');
  truncateSync(img, 16 << 20);
  const vm = (await s.router.call('vm.create', { name: 'Held', memoryMiB: 64, display: 'none', disks: [{ path: img }] })) as VmInfo;
  const id = vm.config.id;
  const lockPath = new VmStore(vmConfigDir(s.env)).runLockPath(id, { create: true });
  const holder = await holdLock(lockPath);
  try {
    const listed = ((await s.router.call('vm.list', {})) as { vms: VmInfo[] }).vms[0]!;
    assert.deepEqual(listed.runningElsewhere, { pid: holder.pid });
    assert.equal(listed.state, 'stopped', 'not running in this process');
    await rejectsWith(
      s.router.call('vm.start', { id }),
      'CONFLICT',
      new RegExp(`^VM 'Held' is already running in another Spindle process \\(pid ${holder.pid}\\)\\.$`),
    );
    const elsewhere = new RegExp(`VM 'Held' is running in another Spindle process \\(pid ${holder.pid}\\), so it cannot`);
    await rejectsWith(s.router.call('vm.update', { id, patch: { cpus: 2 } }), 'CONFLICT', elsewhere);
    await rejectsWith(s.router.call('disk.set', { vmId: id, diskId: 'd0', patch: { aio: 'io_uring' } }), 'CONFLICT', elsewhere);
    await rejectsWith(s.router.call('disk.detach', { vmId: id, diskId: 'd0' }), 'CONFLICT', elsewhere);
    await rejectsWith(s.router.call('vm.delete', { id }), 'CONFLICT', elsewhere);
    await rejectsWith(s.router.call('vm.shutdown', { id }), 'CONFLICT', elsewhere);
    await rejectsWith(s.router.call('vm.forceOff', { id }), 'CONFLICT', elsewhere);
    // The refused start touched no runtime file of the VM.
    assert.equal(existsSync(join(s.dir, 'run', 'spindle', id, 'd0.sock')), false);
    const still = (await s.router.call('vm.get', { id })) as VmInfo;
    assert.deepEqual([still.config.cpus, still.config.disks[0]!.aio], [1, 'threads'], 'nothing changed');
  } finally {
    await holder.kill();
  }
  try {
    const free = (await s.router.call('vm.get', { id })) as VmInfo;
    assert.equal(free.runningElsewhere, undefined, 'the holder is gone');
    const changed = (await s.router.call('disk.set', { vmId: id, diskId: 'd0', patch: { aio: 'io_uring' } })) as VmInfo;
    assert.equal(changed.config.disks[0]!.aio, 'io_uring');
    await s.router.call('vm.delete', { id });
    assert.equal(existsSync(lockPath), false, 'the lock file goes with the VM');
  } finally {
    await s.cleanup();
  }
});
