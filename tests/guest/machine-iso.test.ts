// ISO boot and editing, one boot: a real bootable ISO built here (grub-mkrescue + xorriso, with the
// test guest's kernel and initramfs) boots a VM on the 'pc' machine (the type VMs made before q35
// keep) under BIOS; the guest shuts down on the ACPI power button (busybox acpid). Then the VM is
// edited with `spindle vm update` (the CLI, acting on the VM files) and the edit is still there
// after the backend is closed and a new one started, as after an app restart.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createBackend, type Backend } from '../../electron/api/backend.js';
import type { VmInfo } from '../../electron/shared/api.js';
import { buildGuestImage } from '../lib/guest-image.js';
import { makeBootIso, makeDataIso } from '../lib/test-iso.js';
import { GUEST_CMDLINE, GuestAgent } from './vm-guest.js';

const dir = mkdtempSync(join(tmpdir(), 'spindle-machine-iso-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
let backend: Backend = createBackend({ env });
after(async () => {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});
const call = <T = VmInfo>(method: string, params: unknown): Promise<T> => backend.router.call(method, params) as Promise<T>;

function cli(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [resolve('bin/spindle.js'), 'vm', ...args], { env, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

test('a VM boots from a GRUB ISO on the pc machine, powers off on ACPI, and an edit with vm update survives a restart', async () => {
  const image = await buildGuestImage();
  const bootIso = makeBootIso(dir, image.kernel, image.initrd, `${GUEST_CMDLINE} spindle.acpid=1 spindle.from=iso`);
  const driverIso = makeDataIso(dir, 'drivers', 'DRIVERS', 'driver-disc');
  const created = await call('vm.create', {
    name: 'installer',
    memoryMiB: 512,
    machine: 'pc',
    boot: { kind: 'iso', path: bootIso },
    display: 'none',
  });
  const id = created.config.id;
  assert.equal(created.config.machine, 'pc');

  const g = new GuestAgent(backend.manager, id);
  try {
    await call('vm.start', { id });
    await g.ready(0, 480_000);
    const facts = await g.runOk(
      'cat /proc/cmdline; for i in $(seq 1 100); do [ -b /dev/sr0 ] && break; sleep 0.2; done; dd if=/dev/sr0 bs=1 skip=32769 count=5 2>/dev/null; echo; cat /sys/bus/pci/devices/0000:00:00.0/device',
    );
    assert.match(facts, /spindle\.from=iso/, `GRUB on the ISO started the kernel with its menu's command line:\n${facts}`);
    assert.match(facts, /CD001/, `the guest reads the ISO on /dev/sr0:\n${facts}`);
    assert.match(facts, /0x1237/, `the machine is pc (i440fx host bridge 8086:1237):\n${facts}`);

    const stopped = await call<VmInfo & { forced?: boolean }>('vm.shutdown', { id, timeoutMs: 300_000 });
    assert.equal(stopped.state, 'stopped');
    assert.equal(stopped.forced, undefined, 'the guest powered off on the ACPI power button, not after the timeout');
    assert.match(g.text, /power button pressed, powering off/);
  } finally {
    g.close();
    await call('vm.forceOff', { id }).catch(() => undefined);
  }

  // A contradiction is refused with a sentence and changes nothing.
  const refused = cli('update', 'installer', '--secure-boot', '--memory', '1024');
  assert.equal(refused.code, 2, refused.out);
  assert.match(refused.out, /Secure Boot is part of UEFI: choose UEFI firmware too/);
  assert.equal((await call('vm.get', { id })).config.memoryMiB, 512, 'a refused update changes nothing');

  const edit = cli(
    'update',
    'installer',
    '--name',
    'installed',
    '--memory',
    '768',
    '--cpus',
    '2',
    '--machine',
    'q35',
    '--uefi',
    '--tpm',
    '--forward',
    'tcp:2299:22',
    '--forward',
    'udp:0.0.0.0:5353:53',
    '--cdrom',
    driverIso,
    '--boot-order',
    'cd1,cd0',
  );
  assert.equal(edit.code, 0, edit.out);
  assert.match(edit.out, /installed \(installer\): stopped/);

  // As after an app restart: a new backend reads the VM files again.
  await backend.close();
  backend = createBackend({ env });
  const c = (await call('vm.get', { id })).config;
  assert.equal(c.name, 'installed');
  assert.equal(c.memoryMiB, 768);
  assert.equal(c.cpus, 2);
  assert.equal(c.machine, 'q35');
  assert.equal(c.firmware, 'uefi');
  assert.equal(c.tpm, true);
  assert.deepEqual(c.network.forwards, [
    { proto: 'tcp', hostPort: 2299, guestPort: 22 },
    { proto: 'udp', hostPort: 5353, guestPort: 53, hostAddress: '0.0.0.0' },
  ]);
  assert.equal(c.network.mac, created.config.network.mac, 'an edit keeps the MAC address');
  assert.deepEqual(c.cdroms, [driverIso]);
  assert.deepEqual(c.bootOrder, ['cd1', 'cd0']);
  assert.deepEqual(c.boot, { kind: 'iso', path: bootIso }, 'what the update did not name stays');
});
