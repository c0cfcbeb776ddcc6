import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildQemuArgv, findQemu, chooseAccelerator, resolveAccelerator } from '../../electron/host/vm/launcher.js';
import { VM_CONFIG_VERSION, type VmConfig } from '../../electron/shared/model.js';
import { SpindleError } from '../../electron/shared/errors.js';

const base: VmConfig = {
  version: VM_CONFIG_VERSION,
  id: 'demo',
  name: 'Demo, with "quotes"',
  cpus: 2,
  memoryMiB: 512,
  firmware: 'bios',
  boot: { kind: 'kernel', kernel: '/k/vmlinuz', initrd: '/k/initrd', cmdline: 'console=ttyS0 root=/dev/vda' },
  disks: [
    {
      id: 'd0',
      path: '/img/a,b.img',
      kind: 'file',
      aio: 'threads',
      cache: 'writeback',
      nowait: 'off',
      readOnly: false,
      queues: 2,
      serial: 'x',
    },
    { id: 'd1', path: '/dev/loop7', kind: 'block', aio: 'native', cache: 'none', nowait: 'off', readOnly: false, queues: 1, serial: 'y' },
  ],
  network: { user: false },
  display: 'vnc',
  createdAt: '',
};
const paths = {
  qmp: '/run/s/demo/qmp.sock',
  serial: '/run/s/demo/serial.sock',
  vnc: '/run/s/demo/vnc.sock',
  disks: { d0: '/run/s/demo/d0.sock', d1: '/run/s/demo/d1.sock' },
};
const after = (argv: string[], flag: string) => argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));

test('argv: shared memfd memory with a numa node, one vhost-user-blk-pci per disk with reconnect, QMP, serial, VNC, paused start', () => {
  const argv = buildQemuArgv(base, paths, 'tcg');
  assert.deepEqual(after(argv, '-object'), ['memory-backend-memfd,id=mem,size=512M,share=on']);
  assert.deepEqual(after(argv, '-numa'), ['node,memdev=mem']);
  assert.deepEqual(after(argv, '-m'), ['512M']);
  assert.deepEqual(after(argv, '-smp'), ['2']);
  assert.deepEqual(after(argv, '-accel'), ['tcg']);
  assert.deepEqual(after(argv, '-cpu'), ['max']);
  const chardevs = after(argv, '-chardev');
  assert.ok(chardevs.includes('socket,id=qmp,path=/run/s/demo/qmp.sock,server=on,wait=off'));
  assert.ok(chardevs.includes('socket,id=serial0,path=/run/s/demo/serial.sock,server=on,wait=off'));
  assert.ok(chardevs.includes('socket,id=chr-d0,path=/run/s/demo/d0.sock,reconnect=1'));
  assert.ok(chardevs.includes('socket,id=chr-d1,path=/run/s/demo/d1.sock,reconnect=1'));
  const devices = after(argv, '-device');
  assert.ok(devices.includes('vhost-user-blk-pci,chardev=chr-d0,id=d0,num-queues=2'));
  assert.ok(devices.includes('vhost-user-blk-pci,chardev=chr-d1,id=d1,num-queues=1'));
  assert.deepEqual(after(argv, '-vnc'), ['unix:/run/s/demo/vnc.sock']);
  assert.deepEqual(after(argv, '-kernel'), ['/k/vmlinuz']);
  assert.deepEqual(after(argv, '-append'), ['console=ttyS0 root=/dev/vda']);
  assert.ok(argv.includes('-S'));
  // The free-text name never reaches QEMU's option parser; the id does.
  assert.ok(!argv.some((a) => a.includes('quotes')));
  assert.ok(!argv.includes('-netdev'));
  // Disk image paths never appear in argv: QEMU reaches disks only through Spindle's sockets.
  assert.ok(!argv.some((a) => a.includes('/img/a')));
});

test('argv: kvm uses the host CPU; no display; user network; iso and disk boot; commas in socket paths doubled', () => {
  const argv = buildQemuArgv(
    { ...base, display: 'none', network: { user: true }, boot: { kind: 'iso', path: '/iso/d,ebian.iso' } },
    { ...paths, vnc: undefined, qmp: '/run/a,b/qmp.sock' },
    'kvm',
  );
  assert.deepEqual(after(argv, '-cpu'), ['host']);
  assert.ok(!argv.includes('-vnc'));
  assert.deepEqual(after(argv, '-display'), ['none']);
  assert.ok(after(argv, '-netdev').includes('user,id=net0'));
  assert.ok(after(argv, '-chardev').includes('socket,id=qmp,path=/run/a,,b/qmp.sock,server=on,wait=off'));
  const iso = JSON.parse(after(argv, '-blockdev')[0]!);
  assert.deepEqual(iso, { driver: 'file', filename: '/iso/d,ebian.iso', 'node-name': 'cd0-file', 'read-only': true });
  assert.ok(after(argv, '-device').includes('ide-cd,id=cd0,drive=cd0-media,bootindex=0'));
  const diskBoot = buildQemuArgv({ ...base, boot: { kind: 'disk' } }, paths, 'tcg');
  assert.ok(after(diskBoot, '-device').includes('vhost-user-blk-pci,chardev=chr-d0,id=d0,num-queues=2,bootindex=0'));
});

test('argv: UEFI without firmware is refused; with firmware it maps pflash', () => {
  assert.throws(
    () => buildQemuArgv({ ...base, firmware: 'uefi' }, paths, 'tcg'),
    (e: SpindleError) => e.code === 'INVALID_ARGUMENT' && /OVMF/.test(e.message),
  );
  const argv = buildQemuArgv({ ...base, firmware: 'uefi' }, { ...paths, firmware: { code: '/fw/CODE.fd', vars: '/cfg/VARS.fd' } }, 'tcg');
  assert.ok(after(argv, '-machine')[0]!.includes('pflash0=fw-code,pflash1=fw-vars'));
});

test('missing QEMU names the Debian package; explicit bad paths too', () => {
  assert.throws(
    () => findQemu(undefined, { PATH: '/nonexistent' }),
    (e: SpindleError) => e.code === 'QEMU_MISSING' && /qemu-system-x86/.test(e.message),
  );
  assert.throws(
    () => findQemu('/nonexistent/qemu'),
    (e: SpindleError) => e.code === 'QEMU_MISSING' && /apt install qemu-system-x86/.test(e.message),
  );
  assert.throws(
    () => findQemu('relative/qemu'),
    (e: SpindleError) => e.code === 'QEMU_MISSING',
  );
  const dir = mkdtempSync(join(tmpdir(), 'spindle-q-'));
  try {
    writeFileSync(join(dir, 'qemu-system-x86_64'), '');
    assert.throws(
      () => findQemu(undefined, { PATH: dir }),
      (e: SpindleError) => e.code === 'QEMU_MISSING',
    ); // not executable
    chmodSync(join(dir, 'qemu-system-x86_64'), 0o755);
    assert.equal(findQemu(undefined, { PATH: dir }), join(dir, 'qemu-system-x86_64'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('accelerator: a missing /dev/kvm means TCG with a visible warning; SPINDLE_ACCEL=tcg forces it', async () => {
  const c = chooseAccelerator('/nonexistent/kvm');
  assert.equal(c.accel, 'tcg');
  assert.match(c.warning!, /TCG/);
  const forced = await resolveAccelerator('/usr/bin/qemu-system-x86_64', { SPINDLE_ACCEL: 'tcg' });
  assert.equal(forced.accel, 'tcg');
  assert.match(forced.warning!, /SPINDLE_ACCEL=tcg/);
});

test('accelerator: a /dev/kvm that opens on a CPU without vmx/svm means TCG, with the reason', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-accel-'));
  try {
    const kvm = join(dir, 'kvm');
    writeFileSync(kvm, '');
    writeFileSync(join(dir, 'nohv'), 'processor\t: 0\nflags\t\t: fpu vme de pse tsc msr sse sse2 hypervisor\n');
    writeFileSync(join(dir, 'hv'), 'processor\t: 0\nflags\t\t: fpu vme de pse tsc msr vmx sse sse2\n');
    const without = chooseAccelerator(kvm, join(dir, 'nohv'));
    assert.equal(without.accel, 'tcg');
    assert.match(without.warning!, /does not advertise hardware virtualisation \(vmx\/svm\)/);
    assert.deepEqual(chooseAccelerator(kvm, join(dir, 'hv')), { accel: 'kvm' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
