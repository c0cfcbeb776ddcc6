// Host device discovery on real loop devices and the machine's root device.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { deviceUsage, listHostDevices, type HostDevice } from '../../electron/dataplane/block/host-devices.js';
import { rootDeviceNames } from '../../electron/dataplane/block/sysfs.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { attachLoop, makeFile, mountFs, tempDir } from '../lib/loop.js';

const find = (list: HostDevice[], path: string): HostDevice | undefined =>
  list.flatMap((d) => [d, ...d.partitions]).find((d) => d.path === path);

test('a plain loop device is usable; a mounted one is not, with its mount point in the reason', () => {
  const dir = tempDir();
  const plain = attachLoop(makeFile(join(dir.path, 'plain.img'), 8 << 20));
  const mounted = mountFs('ext4', 16);
  try {
    const list = listHostDevices();
    const p = find(list, plain.device);
    assert.ok(p, `${plain.device} missing from ${list.map((d) => d.path).join(' ')}`);
    assert.equal(p.type, 'loop');
    assert.equal(p.sizeBytes, 8 << 20);
    assert.equal(p.usable, true, p.reason ?? '');
    assert.equal(p.reason, null);
    const m = find(list, mounted.device.device)!;
    assert.ok(m);
    assert.equal(m.usable, false);
    assert.deepEqual(m.mountpoints, [mounted.mountpoint]);
    assert.equal(m.fstype, 'ext4');
    assert.ok(m.reason!.includes(`mounted at ${mounted.mountpoint}`), m.reason!);

    const u = deviceUsage(plain.device);
    assert.equal(u.inUse, false);
    assert.equal(u.exclusiveOpen, 'free');
    const mu = deviceUsage(mounted.device.device);
    assert.equal(mu.inUse, true);
    assert.equal(mu.exclusiveOpen, 'busy', 'O_EXCL on a mounted device must fail with EBUSY');
  } finally {
    mounted.cleanup();
    plain.detach();
    dir.cleanup();
  }
});

test('a device held exclusively by another opener is in use', async () => {
  const dir = tempDir();
  const loop = attachLoop(makeFile(join(dir.path, 'held.img'), 8 << 20));
  const { openSync, closeSync, constants } = await import('node:fs');
  const fd = openSync(loop.device, constants.O_RDONLY | constants.O_EXCL);
  try {
    const u = deviceUsage(loop.device);
    assert.equal(u.inUse, true);
    assert.equal(u.exclusiveOpen, 'busy');
    assert.match(u.reasons.join(' '), /open exclusively by another program/);
  } finally {
    closeSync(fd);
    loop.detach();
    dir.cleanup();
  }
});

test("the device holding / is refused", (t) => {
  const roots = rootDeviceNames();
  if (roots.size === 0) {
    // `/` on overlay/tmpfs (a container): there is no root device to refuse; say so rather than pass silently.
    t.diagnostic('/ is not on a block device here');
    assert.equal(listHostDevices().some((d) => /root filesystem/.test(d.reason ?? '')), false);
    return;
  }
  const list = listHostDevices();
  const rootDisks = list.filter((d) => roots.has(d.name) || d.partitions.some((p) => roots.has(p.name)));
  assert.ok(rootDisks.length > 0, `no listed device among ${[...roots].join(', ')}`);
  for (const d of rootDisks) {
    assert.equal(d.usable, false);
    assert.match(d.reason!, /holds the host's root filesystem/);
  }
});

test('deviceUsage refuses what is not a block device', () => {
  assert.throws(() => deviceUsage('/etc/hostname'), (e: unknown) => e instanceof SpindleError && e.code === 'NOT_A_DISK' && /not a block device/.test(e.message));
  assert.throws(() => deviceUsage('/dev/no-such-disk'), (e: unknown) => e instanceof SpindleError && e.code === 'NOT_FOUND');
});
