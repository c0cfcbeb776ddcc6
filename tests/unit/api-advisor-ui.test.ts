// What the app's dialogs need from the advisor API, through the router on real
// files: the suggested images/ directory is made on first use (0700), qcow2 is shown as a disk and
// other container formats are refused by their header with a sentence naming the format, an ISO 9660 image is recognised,
// the last probe of a file is kept, and loop devices name their backing file.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { methods, type FileAdvice, type HostDevice } from '../../electron/shared/api.js';
import { contentOf } from '../../electron/dataplane/block/format-detect.js';
import { apiSetup, rejectsWith } from '../lib/api.js';
import { attachLoop, makeFile } from '../lib/loop.js';

// /var/tmp: the probe needs O_DIRECT, which a tmpfs /tmp may not offer.
const setup = () => apiSetup('spindle-api-advisor-ui-', { base: '/var/tmp' });

async function call<M extends keyof typeof methods>(router: { call(m: string, p: unknown): Promise<unknown> }, m: M, params: unknown) {
  return methods[m].result.parse(await router.call(m, params)) as ReturnType<(typeof methods)[M]['result']['parse']>;
}

function iso(path: string): string {
  const b = Buffer.alloc(1 << 20);
  b[0x8000] = 1;
  b.write('CD001', 0x8001, 'latin1');
  b[0x8800] = 255;
  b.write('CD001', 0x8801, 'latin1');
  writeFileSync(path, b);
  return path;
}

test('advisor.createImage in the suggested <data>/spindle/images/ on a fresh install makes the directory 0700', async () => {
  const s = setup();
  try {
    const images = join(s.env.XDG_DATA_HOME!, 'spindle', 'images');
    assert.equal(existsSync(images), false);
    const path = join(images, 'vm-d0.img');
    const made = (await call(s.router, 'advisor.createImage', { path, sizeBytes: 8 << 20, preallocate: false })) as FileAdvice;
    assert.equal(made.sizeBytes, 8 << 20);
    assert.equal(statSync(images).mode & 0o777, 0o700);
    // Anywhere else, a missing directory is still refused: a typo never makes directories.
    await rejectsWith(
      s.router.call('advisor.createImage', { path: join(s.dir, 'no-such-dir', 'x.img'), sizeBytes: 8 << 20, preallocate: false }),
      'NOT_FOUND',
      /does not exist/,
    );
    assert.equal(existsSync(join(s.dir, 'no-such-dir')), false);
  } finally {
    await s.cleanup();
  }
});

test('advisor.inspect shows a qcow2 image (virtual size, cluster size, backing chain) and refuses vmdk with a sentence naming the format; raw and ISO 9660 are told apart', async () => {
  const s = setup();
  try {
    const base = join(s.dir, 'base.qcow2');
    const qcow2 = join(s.dir, 'disk.qcow2');
    for (const args of [
      ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=131072', base, '16M'],
      ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', qcow2],
    ]) {
      const q = spawnSync('qemu-img', args, { encoding: 'utf8' });
      assert.equal(q.status, 0, q.stderr);
    }
    const before = readFileSync(qcow2);
    const a = (await call(s.router, 'advisor.inspect', { path: qcow2 })) as FileAdvice;
    assert.equal(a.format, 'qcow2');
    assert.equal(a.image!.virtualSizeBytes, 16 << 20);
    assert.equal(a.image!.clusterSizeBytes, 65536);
    assert.deepEqual(
      a.image!.backingChain.map((l) => [l.path, l.format, l.clusterSizeBytes]),
      [[base, 'qcow2', 131072]],
    );
    await rejectsWith(s.router.call('advisor.preallocate', { path: qcow2 }), 'NOT_A_DISK', /qcow2/);
    assert.deepEqual(readFileSync(qcow2), before, 'the file is not touched');
    const vmdk = join(s.dir, 'disk.vmdk');
    assert.equal(spawnSync('qemu-img', ['create', '-q', '-f', 'vmdk', vmdk, '16M']).status, 0);
    await rejectsWith(s.router.call('advisor.inspect', { path: vmdk }), 'NOT_A_DISK', /is a VMware \(vmdk\) image/);
    const raw = (await call(s.router, 'advisor.inspect', { path: makeFile(join(s.dir, 'raw.img'), 4 << 20) })) as FileAdvice;
    assert.equal(raw.format, 'raw');
    assert.equal(raw.image!.virtualSizeBytes, 4 << 20);
    const cd = (await call(s.router, 'advisor.inspect', { path: iso(join(s.dir, 'cd.iso')) })) as FileAdvice;
    assert.equal(cd.format, 'iso9660');
  } finally {
    await s.cleanup();
  }
});

test('contentOf names every container format by its header, and ISO 9660 apart from raw', () => {
  const h = (off: number, sig: Buffer | string, extra?: (b: Buffer) => void) => {
    const b = Buffer.alloc(0x9000);
    (typeof sig === 'string' ? Buffer.from(sig, 'latin1') : sig).copy(b, off);
    extra?.(b);
    return b;
  };
  assert.equal(
    contentOf(
      h(0, 'QFI\xfb', (b) => b.writeUInt32BE(3, 4)),
      Buffer.alloc(0),
      0x9000,
    ),
    'qcow2',
  );
  assert.equal(
    contentOf(
      h(0, 'QFI\xfb', (b) => b.writeUInt32BE(1, 4)),
      Buffer.alloc(0),
      0x9000,
    ),
    'qcow',
  );
  assert.equal(contentOf(h(0, 'QED\0'), Buffer.alloc(0), 0x9000), 'qed');
  assert.equal(
    contentOf(
      h(0, '', (b) => b.writeUInt32LE(0xbeda107f, 0x40)),
      Buffer.alloc(0),
      0x9000,
    ),
    'vdi',
  );
  assert.equal(contentOf(h(0, 'KDMV'), Buffer.alloc(0), 0x9000), 'vmdk');
  assert.equal(contentOf(h(0, '# Disk DescriptorFile\n'), Buffer.alloc(0), 0x9000), 'vmdk');
  assert.equal(contentOf(h(0, 'conectix'), Buffer.alloc(0), 0x9000), 'vpc');
  assert.equal(contentOf(h(0, 'vhdxfile'), Buffer.alloc(0), 0x9000), 'vhdx');
  assert.equal(contentOf(h(0, 'LUKS\xba\xbe'), Buffer.alloc(0), 0x9000), 'luks');
  assert.equal(contentOf(h(0, 'WithoutFreeSpace'), Buffer.alloc(0), 0x9000), 'parallels');
  assert.equal(contentOf(h(0x8001, 'CD001'), Buffer.alloc(0), 0x9000), 'iso9660');
  assert.equal(contentOf(Buffer.alloc(0x9000, 0xa5), Buffer.alloc(0), 0x9000), 'raw');
  assert.equal(contentOf(Buffer.alloc(100), Buffer.alloc(0), 100), 'raw', 'a file shorter than a header is raw');
});

test('the last probe of a file is kept: advisor.inspect returns it, with when it was measured', async () => {
  const s = setup();
  try {
    const path = makeFile(join(s.dir, 'probe.img'), 8 << 20, { written: true });
    const fresh = (await call(s.router, 'advisor.inspect', { path })) as FileAdvice;
    assert.equal(fresh.probe, undefined);
    assert.ok(!fresh.notes.some((n) => /--probe/.test(n)), 'the app is not told to run a CLI flag');
    const probed = (await call(s.router, 'advisor.probe', { path })) as FileAdvice;
    assert.ok(probed.probe?.measured, probed.probe?.summary);
    assert.ok(!Number.isNaN(Date.parse(probed.probe!.at!)));
    const again = (await call(s.router, 'advisor.inspect', { path })) as FileAdvice;
    assert.deepEqual(again.probe, probed.probe);
    assert.equal(again.recommended.nowait, probed.recommended.nowait);
    assert.ok(!again.notes.some((n) => /nowait not measured/.test(n)), again.notes.join('\n'));
    assert.equal(statSync(join(s.env.XDG_DATA_HOME!, 'spindle', 'probes')).mode & 0o777, 0o700);
  } finally {
    await s.cleanup();
  }
});

test('host.devices: a loop device names the file behind it', async () => {
  const s = setup();
  const loop = attachLoop(makeFile(join(s.dir, 'backing.img'), 8 << 20));
  try {
    const { devices } = (await call(s.router, 'host.devices', {})) as { devices: HostDevice[] };
    const d = devices.find((x) => x.path === loop.device);
    assert.ok(d, `${loop.device} listed`);
    assert.equal(d.backingFile, loop.backingFile);
  } finally {
    loop.detach();
    await s.cleanup();
  }
});
