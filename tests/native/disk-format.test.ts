// A disk's format is a property of the disk: read from its header once, when it is added, stored
// in the VM config, and never probed again. Through the API router with real files, qemu-img and a
// real QEMU (TCG, nothing to boot: the disks only need to be served):
// - detection at attach: raw, qcow2, an explicit format; vmdk and a wrong --format refused with sentences;
// - QEMU's CVE-2008-2004: a raw disk whose guest wrote a qcow2 header (naming a backing file on the
//   host) still starts, and is served as raw bytes at its own size; a config written before the
//   field existed (no `format`) is raw too;
// - a stopped VM's disks grow offline (raw: ftruncate; qcow2: qemu-img resize); shrink is refused.
import { test, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBackend } from '../../electron/api/backend.js';
import type { VmInfo } from '../../electron/shared/api.js';
import { makeFile } from '../lib/loop.js';
import { rejectsWith } from '../lib/api.js';

const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'spindle-format-'));
const env = { ...process.env, XDG_CONFIG_HOME: join(dir, 'cfg'), XDG_DATA_HOME: join(dir, 'data'), XDG_RUNTIME_DIR: join(dir, 'run') };
const backend = createBackend({ env });
after(async () => {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});
const call = <T = VmInfo>(method: string, params: unknown): Promise<T> => backend.router.call(method, params) as Promise<T>;

function qemuImg(...args: string[]): string {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
const virtualSize = (path: string, fmt: string): number =>
  (JSON.parse(qemuImg('info', '--output=json', '-U', '-f', fmt, path)) as { 'virtual-size': number })['virtual-size'];

test('the format is detected when a disk is added and stored; vmdk and a wrong explicit format are refused with sentences', async () => {
  const raw = makeFile(join(dir, 'a.raw'), 16 * MiB);
  const q = join(dir, 'a.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', q, '64M');
  const vmdk = join(dir, 'a.vmdk');
  qemuImg('create', '-q', '-f', 'vmdk', vmdk, '16M');
  const vm = await call('vm.create', { name: 'formats', memoryMiB: 64, display: 'none', network: { user: false }, disks: [{ path: raw }, { path: q }] });
  assert.deepEqual(
    vm.config.disks.map((d) => d.format),
    ['raw', 'qcow2'],
  );
  const id = vm.config.id;
  // As QEMU's format=raw: the user may say raw for any file; it is then served as bytes.
  const q2 = join(dir, 'b.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', q2, '8M');
  const asRaw = await call('disk.attach', { vmId: id, disk: { path: q2, format: 'raw' } });
  assert.equal(asRaw.config.disks.at(-1)!.format, 'raw');
  await rejectsWith(call('disk.attach', { vmId: id, disk: { path: vmdk } }), 'UNSUPPORTED_FORMAT', /is a VMware \(vmdk\) image.*spindle import/);
  await rejectsWith(
    call('disk.attach', { vmId: id, disk: { path: makeFile(join(dir, 'c.raw'), MiB), format: 'qcow2' } }),
    'UNSUPPORTED_FORMAT',
    /is not a qcow2 image \(its header says raw\)/,
  );
  await rejectsWith(call('disk.attach', { vmId: id, disk: { path: raw, format: 'vmdk' } }), 'INVALID_ARGUMENT');
  await call('vm.delete', { id });
});

test("CVE-2008-2004: a raw disk whose guest wrote a qcow2 header stays raw at the next start; a config without 'format' is raw", async () => {
  const d0 = makeFile(join(dir, 'cve0.raw'), 16 * MiB);
  const d1 = makeFile(join(dir, 'cve1.raw'), 16 * MiB);
  const vm = await call('vm.create', { name: 'cve', memoryMiB: 64, display: 'none', network: { user: false }, disks: [{ path: d0 }, { path: d1 }] });
  const id = vm.config.id;
  // A file written before the field existed: d1 has no 'format' (the store must read it as raw).
  const file = join(env.XDG_CONFIG_HOME, 'spindle', 'vms', `${id}.json`);
  const stored = JSON.parse(readFileSync(file, 'utf8')) as { disks: Array<Record<string, unknown>> };
  delete stored.disks[1]!.format;
  writeFileSync(file, JSON.stringify(stored));
  // What a hostile guest writes at sector 0: a real qcow2 header whose backing file is a host file.
  const evil = join(dir, 'evil.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/hostname', '-F', 'raw', evil, '1G');
  const header = readFileSync(evil).subarray(0, 64 * 1024);
  for (const p of [d0, d1]) {
    const fd = openSync(p, 'r+');
    writeSync(fd, header, 0, header.length, 0);
    closeSync(fd);
  }
  assert.equal(spawnSync('qemu-img', ['info', d0]).stdout.toString().includes('qcow2'), true, 'a probe would now call it qcow2');
  const started = await call('vm.start', { id });
  try {
    assert.equal(started.state, 'running');
    assert.deepEqual(
      started.disks.map((d) => [d.state, d.sizeBytes]),
      [
        ['serving', 16 * MiB],
        ['serving', 16 * MiB],
      ],
      'served raw at the file size, not as a 1 GiB qcow2 over /etc/hostname',
    );
    assert.deepEqual(
      started.config.disks.map((d) => d.format ?? 'raw'),
      ['raw', 'raw'],
    );
  } finally {
    await call('vm.forceOff', { id });
  }
  assert.deepEqual(readFileSync(d0).subarray(0, header.length), header, "the guest's bytes are left as they are");
  await call('vm.delete', { id });
});

test('a stopped VM: raw and qcow2 disks grow offline, shrink is refused with a sentence', async () => {
  const raw = makeFile(join(dir, 'grow.raw'), 16 * MiB);
  const q = join(dir, 'grow.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', q, '32M');
  const vm = await call('vm.create', { name: 'grow', memoryMiB: 64, display: 'none', network: { user: false }, disks: [{ path: raw }, { path: q }] });
  const id = vm.config.id;
  await call('disk.resize', { vmId: id, diskId: 'd0', sizeBytes: 48 * MiB });
  assert.equal(statSync(raw).size, 48 * MiB);
  await call('disk.resize', { vmId: id, diskId: 'd1', sizeBytes: 96 * MiB });
  assert.equal(virtualSize(q, 'qcow2'), 96 * MiB);
  qemuImg('check', '-f', 'qcow2', q);
  await rejectsWith(call('disk.resize', { vmId: id, diskId: 'd0', sizeBytes: 8 * MiB }), 'INVALID_ARGUMENT', /shrinking a disk is refused/);
  await rejectsWith(call('disk.resize', { vmId: id, diskId: 'd1', sizeBytes: 64 * MiB }), 'INVALID_ARGUMENT', /shrinking a disk is refused/);
  await rejectsWith(call('disk.resize', { vmId: id, diskId: 'd0', sizeBytes: 48 * MiB + 100 }), 'INVALID_ARGUMENT', /not a multiple of 512/);
  await rejectsWith(call('disk.resize', { vmId: id, diskId: 'd9', sizeBytes: 48 * MiB }), 'NOT_FOUND', /has no disk d9/);
  assert.equal(statSync(raw).size, 48 * MiB);
  assert.equal(virtualSize(q, 'qcow2'), 96 * MiB);
  await call('vm.delete', { id });
});
