// The machine settings of issue 16 §4 without a guest: QEMU's argv for q35 (root ports, hot-plug
// ports), Secure Boot, the TPM, CD-ROM drives, boot order, port forwards and bridges; the CLI's
// shared flags; the bridge helper's ACL; the media rules; and the config checks through the API.
import { test, after as afterAll } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildQemuArgv, findSecureBootOvmf } from '../../electron/host/vm/launcher.js';
import { SPARE_ROOT_PORTS } from '../../electron/host/vm/machine-argv.js';
import { bridgeRefusal, explainBridgeFailure } from '../../electron/host/vm/bridge.js';
import { mediaConfig } from '../../electron/host/vm/media.js';
import { machineFields, parseForward } from '../../electron/cli/vm-flags.js';
import { createBackend } from '../../electron/api/backend.js';
import { VM_CONFIG_VERSION, type VmConfig } from '../../electron/shared/model.js';
import type { VmInfo } from '../../electron/shared/api.js';
import { SpindleError } from '../../electron/shared/errors.js';

const tmp = mkdtempSync(join(tmpdir(), 'spindle-machine-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const disk = (id: string) => ({
  id,
  path: `/img/${id}.img`,
  kind: 'file' as const,
  aio: 'threads' as const,
  cache: 'writeback' as const,
  nowait: 'off' as const,
  readOnly: false,
  queues: 1,
  serial: id,
});
const base: VmConfig = {
  version: VM_CONFIG_VERSION,
  id: 'm',
  name: 'm',
  cpus: 1,
  memoryMiB: 256,
  firmware: 'bios',
  boot: { kind: 'iso', path: '/iso/install.iso' },
  disks: [disk('d0'), disk('d1')],
  network: { user: true },
  display: 'vnc',
  createdAt: '',
  machine: 'q35',
};
const paths = { qmp: '/r/qmp.sock', serial: '/r/serial.sock', vnc: '/r/vnc.sock', disks: { d0: '/r/d0.sock', d1: '/r/d1.sock' } };
const valuesOf = (argv: string[], flag: string) => argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));

test('q35: every PCI device on its own root port, spare ports for hot-plug, VGA pinned at 00:01', () => {
  const argv = buildQemuArgv(base, paths, 'tcg');
  assert.deepEqual(valuesOf(argv, '-machine'), ['q35']);
  const devices = valuesOf(argv, '-device');
  const ports = devices.filter((d) => d.startsWith('pcie-root-port,'));
  assert.equal(ports.length, 3 + SPARE_ROOT_PORTS, 'd0, d1, net0 and the spares');
  assert.equal(new Set(ports.map((p) => /addr=([^,]+)/.exec(p)![1])).size, ports.length, 'no two ports share an address');
  assert.equal(new Set(ports.map((p) => /chassis=(\d+)/.exec(p)![1])).size, ports.length, 'each port has its own chassis number');
  assert.ok(devices.includes('VGA,bus=pcie.0,addr=0x1'));
  assert.ok(devices.some((d) => d.startsWith('vhost-user-blk-pci,') && d.includes('id=d1') && d.includes('bus=rp-d1')));
  assert.ok(devices.some((d) => d.startsWith('virtio-net-pci,') && d.includes('bus=rp-net0')));
  // pc keeps its old shape: no root ports, no bus.
  const pc = buildQemuArgv({ ...base, machine: undefined }, paths, 'tcg');
  assert.deepEqual(valuesOf(pc, '-machine'), ['pc']);
  assert.ok(!valuesOf(pc, '-device').some((d) => d.includes('pcie-root-port') || d.includes('bus=')));
});

test('CD-ROMs: the boot ISO in cd0, extra drives (one empty), boot order by bootindex', () => {
  const argv = buildQemuArgv({ ...base, cdroms: ['/iso/virtio-win.iso', null], bootOrder: ['d1', 'cd0', 'net0'] }, paths, 'tcg');
  const devices = valuesOf(argv, '-device');
  assert.ok(devices.includes('ide-cd,id=cd0,drive=cd0-media,bootindex=1'));
  assert.ok(devices.includes('ide-cd,id=cd1,drive=cd1-media'));
  assert.ok(devices.includes('ide-cd,id=cd2'), 'an empty drive has no medium');
  assert.ok(devices.some((d) => d.includes('id=d1') && d.endsWith('bootindex=0')));
  assert.ok(devices.some((d) => d.startsWith('virtio-net-pci') && d.endsWith('bootindex=2')));
  assert.ok(!devices.some((d) => d.includes('id=d0') && d.includes('bootindex')));
  const files = valuesOf(argv, '-blockdev').map((j) => JSON.parse(j) as { filename?: string });
  assert.deepEqual(
    files.filter((f) => f.filename).map((f) => f.filename),
    ['/iso/install.iso', '/iso/virtio-win.iso'],
  );
});

test('network: forwards on loopback unless an address is given; a bridge; the MAC', () => {
  const net = {
    user: true,
    mac: '52:54:00:aa:bb:cc',
    forwards: [
      { proto: 'tcp' as const, hostPort: 2222, guestPort: 22 },
      { proto: 'udp' as const, hostPort: 5353, guestPort: 53, hostAddress: '0.0.0.0' },
    ],
  };
  const argv = buildQemuArgv({ ...base, network: net }, paths, 'tcg');
  assert.deepEqual(valuesOf(argv, '-netdev'), ['user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:0.0.0.0:5353-:53']);
  assert.ok(valuesOf(argv, '-device').some((d) => d.includes('mac=52:54:00:aa:bb:cc')));
  const br = buildQemuArgv({ ...base, network: { user: false, bridge: 'br0' } }, paths, 'tcg');
  assert.deepEqual(valuesOf(br, '-netdev'), ['bridge,id=net0,br=br0']);
  const none = buildQemuArgv({ ...base, network: { user: false } }, paths, 'tcg');
  assert.deepEqual(valuesOf(none, '-netdev'), []);
});

test('UEFI with Secure Boot: SMM on and the flash secured; refused on pc. TPM: CRB on q35, TIS on pc', () => {
  const fw = { code: '/fw/CODE.secboot.fd', vars: '/cfg/VARS.fd', secure: true };
  const argv = buildQemuArgv(
    { ...base, firmware: 'uefi', secureBoot: true, tpm: true },
    { ...paths, firmware: fw, tpm: '/r/tpm.sock' },
    'tcg',
  );
  assert.deepEqual(valuesOf(argv, '-machine'), ['q35,pflash0=fw-code,pflash1=fw-vars,smm=on']);
  assert.deepEqual(valuesOf(argv, '-global'), ['driver=cfi.pflash01,property=secure,value=on']);
  assert.deepEqual(valuesOf(argv, '-tpmdev'), ['emulator,id=tpm0,chardev=chrtpm']);
  assert.ok(valuesOf(argv, '-device').includes('tpm-crb,tpmdev=tpm0'));
  assert.ok(valuesOf(argv, '-chardev').includes('socket,id=chrtpm,path=/r/tpm.sock'));
  assert.throws(
    () => buildQemuArgv({ ...base, machine: 'pc', firmware: 'uefi', secureBoot: true }, { ...paths, firmware: fw }, 'tcg'),
    (e: SpindleError) => /Secure Boot needs the q35 machine type/.test(e.message),
  );
  const pc = buildQemuArgv({ ...base, machine: 'pc', tpm: true }, { ...paths, tpm: '/r/tpm.sock' }, 'tcg');
  assert.ok(valuesOf(pc, '-device').includes('tpm-tis,tpmdev=tpm0'));
});

test('--forward grammar and the shared flags as a patch', () => {
  assert.deepEqual(parseForward('tcp:2222:22'), { proto: 'tcp', hostPort: 2222, guestPort: 22 });
  assert.deepEqual(parseForward('8080:80'), { proto: 'tcp', hostPort: 8080, guestPort: 80 });
  assert.deepEqual(parseForward('udp:0.0.0.0:5353:53'), { proto: 'udp', hostPort: 5353, guestPort: 53, hostAddress: '0.0.0.0' });
  for (const bad of ['tcp:22', 'tcp:0:22', 'tcp:2222:70000', 'sctp:1:2:3:4', 'tcp:host:1:2'])
    assert.throws(
      () => parseForward(bad),
      (e: SpindleError) => e.code === 'INVALID_ARGUMENT' && /--forward takes/.test(e.message),
      bad,
    );
  assert.deepEqual(machineFields({ memory: '1024', machine: 'q35', uefi: true, tpm: true }), {
    memoryMiB: 1024,
    machine: 'q35',
    firmware: 'uefi',
    tpm: true,
  });
  // --append alone edits the current kernel boot; --net off drops forwards; a bridge replaces user networking.
  const current = {
    ...base,
    boot: { kind: 'kernel' as const, kernel: '/k', initrd: '/i', cmdline: 'a' },
    network: { user: true, mac: '52:54:00:00:00:01' },
  };
  assert.deepEqual(machineFields({ append: 'b' }, current).boot, { kind: 'kernel', kernel: '/k', initrd: '/i', cmdline: 'b' });
  assert.deepEqual(machineFields({ bridge: 'br0' }, current).network, { user: false, bridge: 'br0', mac: '52:54:00:00:00:01' });
  assert.deepEqual(
    machineFields({ net: 'off' }, { ...current, network: { user: true, forwards: [{ proto: 'tcp', hostPort: 1, guestPort: 2 }] } }).network,
    {
      user: false,
    },
  );
  assert.throws(() => machineFields({ append: 'x' }, base), /--append goes with --kernel/);
  assert.throws(() => machineFields({ tpm: true, 'no-tpm': true }), /contradict/);
  assert.throws(() => machineFields({ machine: 'virt' }), /--machine is pc or q35/);
  assert.throws(() => machineFields({ bridge: 'br0', forward: ['2222:22'] }), /--forward needs user networking/);
});

test('bridges: a missing interface, a non-bridge, no ACL file, an ACL that denies, one that allows', () => {
  const sys = join(tmp, 'sys');
  mkdirSync(join(sys, 'br0', 'bridge'), { recursive: true });
  mkdirSync(join(sys, 'eth0'), { recursive: true });
  const conf = join(tmp, 'bridge.conf');
  assert.match(bridgeRefusal('br9', { conf, sysClassNet: sys })!, /no network interface 'br9'/);
  assert.match(bridgeRefusal('eth0', { conf, sysClassNet: sys })!, /'eth0' is not a bridge/);
  assert.match(bridgeRefusal('br0', { conf, sysClassNet: sys })!, /does not exist\. As root, add the line 'allow br0'/);
  writeFileSync(conf, 'allow virbr0\n');
  assert.match(bridgeRefusal('br0', { conf, sysClassNet: sys })!, /has no 'allow br0' line/);
  writeFileSync(conf, 'allow all\ndeny br0\n');
  assert.notEqual(bridgeRefusal('br0', { conf, sysClassNet: sys }), null, 'a deny wins over allow all');
  writeFileSync(join(tmp, 'extra.conf'), 'allow br0 # the lab bridge\n');
  writeFileSync(conf, `include ${join(tmp, 'extra.conf')}\n`);
  assert.equal(bridgeRefusal('br0', { conf, sysClassNet: sys }), null);
  assert.match(explainBridgeFailure(['access denied by acl file'], 'br0')!, /allow it in \/etc\/qemu\/bridge.conf/);
  assert.equal(explainBridgeFailure(['something else'], 'br0'), null);
});

test('media: extra drives fill in order; cd0 is the boot ISO; ejecting it lasts only while running', () => {
  const ok = () => undefined;
  assert.deepEqual(mediaConfig(base, 'cd1', '/iso/a.iso', false, ok).cdroms, ['/iso/a.iso']);
  assert.throws(() => mediaConfig(base, 'cd2', '/iso/a.iso', false, ok), /the next one for 'm' is cd1/);
  assert.throws(() => mediaConfig(base, 'cd1', '/iso/a.iso', true, ok), /no drive cd1 while it runs/);
  assert.deepEqual(mediaConfig(base, 'cd0', '/iso/b.iso', false, ok).boot, { kind: 'iso', path: '/iso/b.iso' });
  assert.throws(() => mediaConfig(base, 'cd0', null, false, ok), /change the boot source/);
  assert.equal(mediaConfig(base, 'cd0', null, true, ok), base, 'ejected while running: the config keeps its boot ISO');
  assert.throws(() => mediaConfig({ ...base, boot: { kind: 'disk' } }, 'cd0', '/iso/a.iso', false, ok), /no drive cd0/);
  assert.throws(() => mediaConfig(base, 'cd4', null, false, ok), /no CD-ROM drive 'cd4'/);
});

test('through the API: new VMs are q35 with a MAC; contradictions and unknown boot devices are refused; old files stay pc', async () => {
  const env = { ...process.env, XDG_CONFIG_HOME: join(tmp, 'cfg'), XDG_DATA_HOME: join(tmp, 'data'), XDG_RUNTIME_DIR: join(tmp, 'run') };
  const backend = createBackend({ env });
  try {
    const call = (m: string, p: unknown) => backend.router.call(m, p) as Promise<VmInfo>;
    const vm = await call('vm.create', { name: 'fresh' });
    assert.equal(vm.config.machine, 'q35');
    assert.match(vm.config.network.mac!, /^52:54:00(:[0-9a-f]{2}){3}$/);
    const refuse = (p: Promise<unknown>, re: RegExp) => assert.rejects(p, (e: Error) => re.test(e.message));
    await refuse(call('vm.create', { name: 'x1', secureBoot: true }), /Secure Boot is part of UEFI/);
    if (findSecureBootOvmf())
      await refuse(call('vm.create', { name: 'x2', machine: 'pc', firmware: 'uefi', secureBoot: true }), /Secure Boot needs the q35/);
    await refuse(call('vm.create', { name: 'x3', bootOrder: ['d0'] }), /names d0, which this VM does not have/);
    await refuse(
      call('vm.create', {
        name: 'x4',
        network: {
          user: true,
          forwards: [
            { proto: 'tcp', hostPort: 2222, guestPort: 22 },
            { proto: 'tcp', hostPort: 2222, guestPort: 23 },
          ],
        },
      }),
      /Host port tcp 2222 is forwarded twice/,
    );
    await refuse(call('vm.update', { id: vm.config.id, patch: { cdroms: ['/nonexistent/x.iso'] } }), /does not exist/);
    const edited = await call('vm.update', {
      id: vm.config.id,
      patch: { network: { user: true, forwards: [{ proto: 'tcp', hostPort: 2222, guestPort: 22 }] }, bootOrder: ['net0'] },
    });
    assert.equal(edited.config.network.mac, vm.config.network.mac, 'a network edit keeps the MAC');
    const cleared = await call('vm.update', { id: vm.config.id, patch: { bootOrder: [] } });
    assert.equal(cleared.config.bootOrder, undefined, 'an empty boot order is the default');
    // A file from before machine types existed loads as pc and stays so after an edit.
    const old = { ...base, id: 'oldvm', name: 'old vm', disks: [], boot: { kind: 'disk' }, machine: undefined };
    delete (old as Partial<VmConfig>).machine;
    writeFileSync(join(tmp, 'cfg', 'spindle', 'vms', 'oldvm.json'), JSON.stringify(old));
    const updated = await call('vm.update', { id: 'oldvm', patch: { memoryMiB: 300 } });
    assert.equal(updated.config.machine, undefined);
    assert.equal(updated.config.memoryMiB, 300);
  } finally {
    await backend.close();
  }
});
