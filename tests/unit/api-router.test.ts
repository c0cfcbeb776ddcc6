import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { writeFileSync, truncateSync, symlinkSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiSetup, rejectsWith } from '../lib/api.js';
import { SpindleError } from '../../electron/shared/errors.js';
import type { VmInfo } from '../../electron/shared/api.js';

function setup(extraEnv: Record<string, string> = {}) {
  const s = apiSetup('spindle-router-', { env: extraEnv });
  const img = join(s.dir, 'a.img');
  writeFileSync(img, '');
  truncateSync(img, 16 << 20);
  return { ...s, img };
}

test('unknown methods and malformed params are refused with sentences naming the field', async () => {
  const s = setup();
  try {
    await rejectsWith(s.router.call('vm.explode', {}), 'INVALID_ARGUMENT', /no API method 'vm.explode'/);
    await rejectsWith(s.router.call('__proto__', {}), 'INVALID_ARGUMENT');
    await rejectsWith(s.router.call('vm.create', { name: '' }), 'INVALID_ARGUMENT', /name: A VM needs a name/);
    await rejectsWith(s.router.call('vm.create', { name: 'x', cpus: 0 }), 'INVALID_ARGUMENT', /cpus/);
    await rejectsWith(
      s.router.call('vm.create', { name: 'x', disks: [{ path: 'rel/a.img' }] }),
      'INVALID_ARGUMENT',
      /disks\.0\.path: Paths must be absolute/,
    );
    await rejectsWith(s.router.call('vm.create', { name: 'x', surprise: 1 }), 'INVALID_ARGUMENT', /Unrecognized key/);
    await rejectsWith(s.router.call('vm.get', { id: '../etc' }), 'INVALID_ARGUMENT', /not a VM id/);
    await rejectsWith(s.router.call('vm.get', null), 'INVALID_ARGUMENT');
    await rejectsWith(s.router.call('console.serialInput', { vmId: 'a', dataBase64: '***' }), 'INVALID_ARGUMENT');
    await rejectsWith(s.router.call('vm.create', { name: 'bad\u0007name' }), 'INVALID_ARGUMENT', /control characters/);
  } finally {
    await s.cleanup();
  }
});

test('create applies defaults per disk kind and canonicalises paths (symlinks, ..)', async () => {
  const s = setup();
  try {
    mkdirSync(join(s.dir, 'links'));
    symlinkSync(s.img, join(s.dir, 'links', 'alias.img'));
    const vm = (await s.router.call('vm.create', {
      name: 'My Desktop',
      disks: [{ path: join(s.dir, 'links', '..', 'links', 'alias.img') }],
    })) as VmInfo;
    assert.equal(vm.config.id, 'my-desktop');
    assert.equal(vm.state, 'stopped');
    assert.deepEqual(vm.config.disks[0], {
      id: 'd0',
      path: s.img,
      kind: 'file',
      aio: 'threads',
      cache: 'writeback',
      nowait: 'off',
      readOnly: false,
      queues: 1,
      serial: 'spindle-d0',
      enospc: 'stop',
      format: 'raw',
    });
    // Asking only for native picks the O_DIRECT cache it needs; asking for native + writeback is refused.
    // Another name with the same slug gets a suffixed id (the same name is refused: vm-validation.test.ts).
    const v2 = (await s.router.call('vm.create', { name: 'My-Desktop', disks: [{ path: s.img, aio: 'native' }] })) as VmInfo;
    assert.equal(v2.config.id, 'my-desktop-2');
    assert.equal(v2.config.disks[0]!.cache, 'none');
    await rejectsWith(
      s.router.call('vm.create', { name: 'n', disks: [{ path: s.img, aio: 'native', cache: 'writeback' }] }),
      'UNSUPPORTED_MODE',
      /needs cache 'none' or 'directsync'/,
    );
    // The file on disk is what the API returned.
    const onDisk = JSON.parse(readFileSync(join(s.dir, 'cfg', 'spindle', 'vms', 'my-desktop.json'), 'utf8'));
    assert.deepEqual(onDisk, vm.config);
    const list = (await s.router.call('vm.list', {})) as { vms: VmInfo[] };
    assert.deepEqual(
      list.vms.map((v) => v.config.id),
      ['my-desktop', 'my-desktop-2'],
    );
  } finally {
    await s.cleanup();
  }
});

test('bad disks are refused: missing, directory, same file twice, set-disk into a conflict', async () => {
  const s = setup();
  try {
    await rejectsWith(s.router.call('vm.create', { name: 'a', disks: [{ path: join(s.dir, 'nope.img') }] }), 'NOT_FOUND', /does not exist/);
    await rejectsWith(s.router.call('vm.create', { name: 'a', disks: [{ path: s.dir }] }), 'IS_DIRECTORY');
    await rejectsWith(s.router.call('vm.create', { name: 'a', disks: [{ path: '/dev/null' }] }), 'NOT_A_DISK');
    await rejectsWith(s.router.call('vm.create', { name: 'a', disks: [{ path: s.img }, { path: s.img }] }), 'CONFLICT', /already a disk/);
    const vm = (await s.router.call('vm.create', { name: 'a', disks: [{ path: s.img }] })) as VmInfo;
    await rejectsWith(s.router.call('disk.set', { vmId: vm.config.id, diskId: 'd0', patch: { aio: 'native' } }), 'UNSUPPORTED_MODE');
    const ok = (await s.router.call('disk.set', { vmId: vm.config.id, diskId: 'd0', patch: { aio: 'native', cache: 'none' } })) as VmInfo;
    assert.equal(ok.config.disks[0]!.aio, 'native');
    await rejectsWith(s.router.call('disk.detach', { vmId: vm.config.id, diskId: 'd9' }), 'NOT_FOUND', /no disk d9/);
    const detached = (await s.router.call('disk.detach', { vmId: vm.config.id, diskId: 'd0' })) as VmInfo;
    assert.deepEqual(detached.config.disks, []);
    await rejectsWith(
      s.router.call('vm.create', { name: 'k', boot: { kind: 'kernel', kernel: join(s.dir, 'no-kernel') } }),
      'NOT_FOUND',
      /boot file/,
    );
    await rejectsWith(s.router.call('vm.pause', { id: vm.config.id }), 'CONFLICT', /not running/);
    await rejectsWith(s.router.call('console.serialInput', { vmId: vm.config.id, dataBase64: 'aGk=' }), 'CONFLICT', /not running/);
    await rejectsWith(s.router.call('vm.get', { id: 'ghost' }), 'NOT_FOUND');
  } finally {
    await s.cleanup();
  }
});

test('a missing QEMU is reported at start, naming the Debian package, and the VM stays stopped', async () => {
  const s = setup({ SPINDLE_QEMU: '/nonexistent/qemu-system-x86_64' });
  try {
    const vm = (await s.router.call('vm.create', { name: 'q', disks: [{ path: s.img }] })) as VmInfo;
    await rejectsWith(s.router.call('vm.start', { id: vm.config.id }), 'QEMU_MISSING', /qemu-system-x86/);
    assert.equal(((await s.router.call('vm.get', { id: vm.config.id })) as VmInfo).state, 'stopped');
    const info = (await s.router.call('app.info', {})) as { qemu: { found: boolean; message: string } };
    assert.equal(info.qemu.found, false);
    assert.match(info.qemu.message, /qemu-system-x86/);
  } finally {
    await s.cleanup();
  }
});

test('corrupt VM files show up in vm.list problems and are not touched', async () => {
  const s = setup();
  try {
    const vmsDir = join(s.dir, 'cfg', 'spindle', 'vms');
    mkdirSync(vmsDir, { recursive: true });
    writeFileSync(join(vmsDir, 'weird.json'), '{ nope');
    const list = (await s.router.call('vm.list', {})) as { vms: unknown[]; problems: { file: string; reason: string }[] };
    assert.equal(list.vms.length, 0);
    assert.equal(list.problems.length, 1);
    assert.match(list.problems[0]!.reason, /weird\.json is not valid JSON.*left untouched/);
    assert.equal(readFileSync(join(vmsDir, 'weird.json'), 'utf8'), '{ nope');
  } finally {
    await s.cleanup();
  }
});

test('subscriptions: unknown topics and bad params throw; pending layers answer with a sentence', async () => {
  const s = setup();
  try {
    assert.throws(
      () => s.router.subscribe('nope', {}, () => {}),
      (e: SpindleError) => e.code === 'INVALID_ARGUMENT',
    );
    assert.throws(
      () => s.router.subscribe('console.serial', { id: 'ghost' }, () => {}),
      (e: SpindleError) => e.code === 'NOT_FOUND',
    );
    assert.throws(
      () => s.router.subscribe('console.serial', {}, () => {}),
      (e: SpindleError) => e.code === 'INVALID_ARGUMENT',
    );
    const events: unknown[] = [];
    const off = s.router.subscribe('vms', {}, (e) => events.push(e));
    await s.router.call('vm.create', { name: 'ev' });
    off();
    await s.router.call('vm.create', { name: 'ev2' });
    assert.equal(events.length, 1);
    // bench.* is implemented now (tests/native/bench-compare.test.ts runs it); an unknown run is a sentence.
    assert.throws(
      () => s.router.subscribe('bench.progress', { benchId: 'ghost' }, () => {}),
      (e: SpindleError) => e.code === 'NOT_FOUND',
    );
    await rejectsWith(s.router.call('bench.result', { benchId: 'ghost' }), 'NOT_FOUND', /no comparison/);
  } finally {
    await s.cleanup();
  }
});
