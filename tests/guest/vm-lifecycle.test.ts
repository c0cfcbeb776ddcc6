// Real QEMU, real Linux guest (busybox initramfs), disks served by Spindle's own disk servers
// (the manager's default DiskHost factory).
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, truncateSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { VmManager } from '../../electron/host/vm/manager.js';
import { VmStore } from '../../electron/host/vm/store.js';
import { QmpClient } from '../../electron/host/vm/qmp.js';
import { methods, type VmInfo } from '../../electron/shared/api.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { guestBoot, GuestAgent } from './vm-guest.js';
import { waitFor } from '../lib/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'spindle-vmlife-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_RUNTIME_DIR: join(dir, 'run') };
const boot = await guestBoot();
const manager = new VmManager({ store: new VmStore(join(dir, 'cfg', 'spindle', 'vms')), env });
after(async () => {
  await manager.stopAll(1000);
  rmSync(dir, { recursive: true, force: true });
});

function image(name: string, mib = 32): string {
  const p = join(dir, name);
  writeFileSync(p, '');
  truncateSync(p, mib << 20);
  return p;
}

async function createVm(name: string, disks: string[]): Promise<VmInfo> {
  return manager.create(
    methods['vm.create'].params.parse({
      name,
      memoryMiB: 192,
      display: 'none',
      network: { user: false },
      boot,
      disks: disks.map((path) => ({ path })),
    }),
  );
}

async function waitState(id: string, state: string, timeoutMs = 30_000): Promise<VmInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const vm = manager.get(id);
    if (vm.state === state) return vm;
    if (Date.now() > deadline) throw new Error(`VM ${id} is ${vm.state}, wanted ${state}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('QMP client against real QEMU: greeting, query-status, events, errors', async () => {
  const sock = join(dir, 'raw-qmp.sock');
  const proc = (await import('node:child_process')).spawn(
    'qemu-system-x86_64',
    [
      '-nodefaults',
      '-display',
      'none',
      '-machine',
      'none',
      '-S',
      '-chardev',
      `socket,id=q,path=${sock},server=on,wait=off`,
      '-mon',
      'chardev=q,mode=control',
    ],
    { stdio: 'ignore' },
  );
  try {
    await waitFor(() => existsSync(sock), { timeoutMs: 60_000, what: `QEMU's QMP socket ${sock}` });
    const qmp = await QmpClient.connect(sock);
    assert.ok(qmp.greeting && 'QMP' in qmp.greeting);
    assert.deepEqual(await qmp.execute('query-status'), { status: 'prelaunch', singlestep: false, running: false });
    await assert.rejects(
      qmp.execute('no-such-command'),
      (e: SpindleError) => e.code === 'QEMU_FAILED' && /has not been found/.test(e.message),
    );
    const shutdown = qmp.waitEvent('SHUTDOWN');
    await qmp.execute('quit');
    assert.equal((await shutdown).data.reason, 'host-qmp-quit');
  } finally {
    proc.kill('SIGKILL');
  }
});

test('two VMs at once: boot, disk visible, pause/resume, hot-plug and unplug, ACPI shutdown timeout forces off, guest poweroff, SIGKILL crash', async () => {
  const a = await createVm('Guest A', [image('a0.img')]);
  const b = await createVm('Guest B', [image('b0.img')]);
  const wa = new GuestAgent(manager, a.config.id);
  const wb = new GuestAgent(manager, b.config.id);
  try {
    const [ra, rb] = await Promise.all([manager.start(a.config.id), manager.start(b.config.id)]);
    assert.equal(ra.state, 'running');
    assert.equal(rb.state, 'running');
    assert.ok(ra.pid && rb.pid && ra.pid !== rb.pid);
    assert.ok(ra.accelerator);
    await Promise.all([wa.ready(), wb.ready()]);
    assert.equal((await wa.runOk('cat /sys/block/vda/size')).trim(), String((32 << 20) / 512));
    assert.equal((await wb.runOk('cat /sys/block/vda/size')).trim(), String((32 << 20) / 512));

    // The runtime directory is private.
    const rt = join(dir, 'run', 'spindle');
    assert.equal((await import('node:fs')).statSync(rt).mode & 0o777, 0o700);

    await manager.pause(a.config.id);
    assert.equal((await waitState(a.config.id, 'paused')).state, 'paused');
    await manager.resume(a.config.id);
    await waitState(a.config.id, 'running');
    assert.match(await wa.runOk('echo alive'), /alive/);

    // Hot-plug a second disk into A; the guest sees it; then unplug it (waits for DEVICE_DELETED).
    const hot = image('a1.img', 8);
    const withHot = await manager.attachDisk(a.config.id, { path: hot });
    assert.deepEqual(
      withHot.config.disks.map((d) => d.id),
      ['d0', 'd1'],
    );
    assert.equal(withHot.disks.find((d) => d.id === 'd1')!.state, 'serving');
    await wa.runOk('for i in $(seq 1 100); do [ -e /sys/block/vdb ] && break; sleep 0.2; done; cat /sys/block/vdb/size');
    assert.equal((await wa.runOk('cat /sys/block/vdb/size')).trim(), String((8 << 20) / 512));
    await wa.runOk('echo hotplugged > /dev/vdb; sync');
    const unplugged = await manager.detachDisk(a.config.id, 'd1');
    assert.deepEqual(
      unplugged.config.disks.map((d) => d.id),
      ['d0'],
    );
    assert.match(await wa.runOk('ls /sys/block'), /vda/);
    assert.doesNotMatch(await wa.runOk('ls /sys/block'), /vdb/);
    // A disk in use by a running VM cannot be attached to another.
    await assert.rejects(
      manager.attachDisk(b.config.id, { path: a.config.disks[0]!.path }),
      (e: SpindleError) => e.code === 'DEVICE_BUSY' && /Guest A/.test(e.message),
    );

    // This guest has no ACPI daemon: the power button is ignored, so shutdown forces it off.
    const off = await manager.shutdown(a.config.id, 2000);
    assert.equal(off.state, 'stopped');
    assert.equal(off.crash, undefined);

    // B powers itself off: a clean stop, not a crash.
    wb.fire('poweroff -f');
    await waitState(b.config.id, 'stopped', 60_000);

    // Restart A, then kill its QEMU: 'crashed', with QEMU's stderr lines, and its disks closed.
    const mark = wa.mark();
    const again = await manager.start(a.config.id);
    await wa.ready(mark);
    process.kill(again.pid!, 'SIGKILL');
    const crashed = await waitState(a.config.id, 'crashed');
    assert.equal(crashed.crash!.signal, 'SIGKILL');
    assert.match(crashed.crash!.message, /killed by SIGKILL/);
    assert.ok(Array.isArray(crashed.crash!.stderrTail));
    assert.deepEqual(
      crashed.disks.map((d) => d.state),
      ['stopped'],
    );
    assert.deepEqual([...manager.diskHosts()], []);
    // A crashed VM starts again.
    await manager.start(a.config.id);
    await manager.forceOff(a.config.id);
    assert.equal(manager.get(a.config.id).state, 'stopped');
  } finally {
    wa.close();
    wb.close();
  }
});

test('a QEMU that fails while starting is reported with its stderr and the VM shows crashed', async () => {
  const vm = await createVm('Bad Memory', []);
  // A 'kernel' that is not one: QEMU refuses it after starting and exits.
  const store = new VmStore(join(dir, 'cfg', 'spindle', 'vms'));
  const cfg = store.loadAll().vms.find((v) => v.id === vm.config.id)!;
  store.update({ ...cfg, boot: { kind: 'kernel', kernel: '/etc/hostname', cmdline: '' } });
  await assert.rejects(
    manager.start(vm.config.id),
    (e: SpindleError) => e.code === 'QEMU_FAILED' && /QEMU exited while starting/.test(e.message),
  );
  const info = manager.get(vm.config.id);
  assert.equal(info.state, 'crashed');
  assert.ok(info.crash!.stderrTail.length > 0, 'stderr lines kept');
});

test('a mounted block device is refused with the mount point', async (t) => {
  const backing = image('mnt.img', 16);
  execFileSync('mkfs.ext4', ['-q', backing]);
  const loop = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  try {
    execFileSync('mount', [loop, mnt]);
    try {
      const vm = await createVm('Mount Test', []);
      await assert.rejects(
        manager.attachDisk(vm.config.id, { path: loop }),
        (e: SpindleError) => e.code === 'DEVICE_BUSY' && e.message.includes(mnt),
      );
    } finally {
      execFileSync('umount', [mnt]);
    }
    // Unmounted, the same device is accepted with the host-device defaults.
    const vm2 = await createVm('Loop Test', []);
    const withLoop = await manager.attachDisk(vm2.config.id, { path: loop });
    assert.deepEqual(
      { kind: withLoop.config.disks[0]!.kind, aio: withLoop.config.disks[0]!.aio, cache: withLoop.config.disks[0]!.cache },
      { kind: 'block', aio: 'native', cache: 'none' },
    );
  } finally {
    execFileSync('losetup', ['-d', loop]);
  }
  t.diagnostic(`loop ${loop}`);
});
