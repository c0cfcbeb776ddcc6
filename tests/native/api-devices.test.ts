// host.devices, advisor.* and the VM manager's device checks (one implementation: block/host-devices)
// through the API router, on real loop devices: plain, mounted, read-only, held exclusively.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, constants, openSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { apiSetup, isolatedEnv, rejectsWith } from '../lib/api.js';
import { methods, type FileAdvice, type HostDevice, type VmInfo } from '../../electron/shared/api.js';
import { attachLoop, makeFile, mountFs, tempDir } from '../lib/loop.js';

const setup = () => apiSetup('spindle-api-devices-');

async function devices(router: { call(m: string, p: unknown): Promise<unknown> }): Promise<HostDevice[]> {
  return methods['host.devices'].result.parse(await router.call('host.devices', {})).devices;
}

test('a plain loop device: listed usable, advised native + none, attached with those defaults; nothing to preallocate', async () => {
  const s = setup();
  const loop = attachLoop(makeFile(join(s.dir, 'plain.img'), 8 << 20));
  try {
    const d = (await devices(s.router)).find((x) => x.path === loop.device);
    assert.ok(d, `${loop.device} listed`);
    assert.deepEqual({ usable: d.usable, reason: d.reason, type: d.type, readOnly: d.readOnly, sizeBytes: d.sizeBytes }, { usable: true, reason: undefined, type: 'loop', readOnly: false, sizeBytes: 8 << 20 });
    const advice = methods['advisor.inspect'].result.parse(await s.router.call('advisor.inspect', { path: loop.device })) as FileAdvice;
    assert.equal(advice.kind, 'block');
    assert.deepEqual(advice.recommended, { aio: 'native', cache: 'none', nowait: 'off' });
    assert.equal(advice.inUse, false);
    assert.equal(advice.usage?.exclusiveOpen, 'free');
    const probed = (await s.router.call('advisor.probe', { path: loop.device })) as FileAdvice;
    assert.equal(probed.probe?.measured, false);
    assert.match(probed.probe!.summary, /block device/);
    await rejectsWith(s.router.call('advisor.preallocate', { path: loop.device }), 'INVALID_ARGUMENT', /host block device: it has no holes/);
    const vm = (await s.router.call('vm.create', { name: 'plain', disks: [{ path: loop.device }] })) as VmInfo;
    assert.deepEqual({ kind: vm.config.disks[0]!.kind, aio: vm.config.disks[0]!.aio, cache: vm.config.disks[0]!.cache }, { kind: 'block', aio: 'native', cache: 'none' });
  } finally {
    loop.detach();
    await s.cleanup();
  }
});

test('a mounted loop device: listed unusable with the mount point, advised in use, refused by vm.create', async () => {
  const s = setup();
  const fs = mountFs('ext4', 16);
  try {
    const d = (await devices(s.router)).find((x) => x.path === fs.device.device)!;
    assert.equal(d.usable, false);
    assert.deepEqual(d.mountpoints, [fs.mountpoint]);
    assert.ok(d.reason!.includes(`mounted at ${fs.mountpoint}`), d.reason);
    const advice = (await s.router.call('advisor.inspect', { path: fs.device.device })) as FileAdvice;
    assert.equal(advice.inUse, true);
    assert.equal(advice.safeForNative, false);
    assert.deepEqual(advice.usage?.mountpoints, [fs.mountpoint]);
    await rejectsWith(s.router.call('vm.create', { name: 'mounted', disks: [{ path: fs.device.device }] }), 'DEVICE_BUSY', new RegExp(`mounted at ${fs.mountpoint}`));
  } finally {
    fs.cleanup();
    await s.cleanup();
  }
});

test('a read-only loop device: listed read-only; attaching it writable is refused, read-only is accepted', async () => {
  const s = setup();
  const backing = makeFile(join(s.dir, 'ro.img'), 8 << 20);
  const device = execFileSync('losetup', ['-r', '-f', '--show', backing], { encoding: 'utf8' }).trim();
  try {
    const d = (await devices(s.router)).find((x) => x.path === device)!;
    assert.equal(d.readOnly, true);
    await rejectsWith(s.router.call('vm.create', { name: 'ro', disks: [{ path: device }] }), 'READ_ONLY', /read-only device: attach it read-only/);
    const vm = (await s.router.call('vm.create', { name: 'ro', disks: [{ path: device, readOnly: true }] })) as VmInfo;
    assert.equal(vm.config.disks[0]!.readOnly, true);
    // Switching it to read-write later is refused at start, with the same sentence.
    await s.router.call('disk.set', { vmId: vm.config.id, diskId: 'd0', patch: { readOnly: false } });
    await rejectsWith(s.router.call('vm.start', { id: vm.config.id }), 'READ_ONLY', /attach it read-only/);
  } finally {
    execFileSync('losetup', ['-d', device]);
    await s.cleanup();
  }
});

test('a device another program holds exclusively is refused by vm.create and disk.attach', async () => {
  const s = setup();
  const loop = attachLoop(makeFile(join(s.dir, 'held.img'), 8 << 20));
  const fd = openSync(loop.device, constants.O_RDONLY | constants.O_EXCL);
  try {
    await rejectsWith(s.router.call('vm.create', { name: 'held', disks: [{ path: loop.device }] }), 'DEVICE_BUSY', /open exclusively by another program/);
    const vm = (await s.router.call('vm.create', { name: 'held' })) as VmInfo;
    await rejectsWith(s.router.call('disk.attach', { vmId: vm.config.id, disk: { path: loop.device } }), 'DEVICE_BUSY', /open exclusively/);
  } finally {
    closeSync(fd);
    loop.detach();
    await s.cleanup();
  }
});

test('permission denied on a disk names the group that grants access (vm create as nobody)', async () => {
  const dir = tempDir('spindle-api-perm-');
  try {
    chmodSync(dir.path, 0o755);
    const img = join(dir.path, 'private.img');
    writeFileSync(img, Buffer.alloc(4096));
    chownSync(img, 0, 6); // group 'disk' on Debian
    chmodSync(img, 0o640);
    const home = join(dir.path, 'home');
    mkdirSync(home, { mode: 0o777 });
    chmodSync(home, 0o777);
    const env = isolatedEnv(home, { HOME: home });
    const r = spawnSync(process.execPath, ['bin/spindle.js', 'vm', 'create', 'nobody-vm', '--disk', img], { uid: 65534, gid: 65534, env, encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /Permission denied opening .*private\.img\. Members of group 'disk' may open it/);
  } finally {
    dir.cleanup();
  }
});
