// Image operations as a user runs them, judged by QEMU's own qemu-img: create-image (raw and qcow2,
// cluster size, preallocation, backing file; every mistake a one-line sentence, nothing created),
// inspect (virtual size, allocation, cluster size, backing chain), and import (vmdk, vdi, vhdx, qcow2,
// raw; progress; never overwrites) through the CLI and the API.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FileAdvice, ImportProgress } from '../../electron/shared/api.js';
import { tempDir } from '../lib/loop.js';
import { apiSetup, rejectsWith } from '../lib/api.js';

const spindle = (...args: string[]) => spawnSync(process.execPath, ['bin/spindle.js', ...args], { encoding: 'utf8' });

function qemuImg(...args: string[]): string {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  assert.equal(r.status, 0, `qemu-img ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
const info = (path: string) => JSON.parse(qemuImg('info', '--output=json', '-U', path)) as Record<string, unknown>;

test('create-image qcow2 with a cluster size, preallocation and a backing file; qemu-img check is clean; inspect shows it', () => {
  const dir = tempDir('spindle-images-', '/var/tmp');
  try {
    const base = join(dir.path, 'base.qcow2');
    const made = spindle('create-image', base, '--size', '64M', '--format', 'qcow2', '--cluster-size', '128K', '--preallocate', 'metadata');
    assert.equal(made.status, 0, made.stderr);
    assert.match(made.stdout, /64 MiB qcow2, preallocated \(metadata\), clusters of 128 KiB/);
    const b = info(base);
    assert.equal(b.format, 'qcow2');
    assert.equal(b['virtual-size'], 64 << 20);
    assert.equal(b['cluster-size'], 128 << 10);
    qemuImg('check', base);
    // An overlay takes its size from the backing file; the name is kept as given (absolute).
    const top = join(dir.path, 'top.qcow2');
    const o = spindle('create-image', top, '--format', 'qcow2', '--backing', base, '--json');
    assert.equal(o.status, 0, o.stderr);
    assert.deepEqual(JSON.parse(o.stdout).backing, { path: base, format: 'qcow2' });
    const t = info(top);
    assert.equal(t['backing-filename'], base);
    assert.equal(t['backing-filename-format'], 'qcow2');
    assert.equal(t['virtual-size'], 64 << 20);
    qemuImg('check', top);
    // A raw backing file is named raw (qemu-img never probes it later).
    const rawBase = join(dir.path, 'base.raw');
    assert.equal(spindle('create-image', rawBase, '--size', '8M').status, 0);
    assert.equal(spindle('create-image', join(dir.path, 'over-raw.qcow2'), '--format', 'qcow2', '--backing', rawBase, '--size', '16M').status, 0);
    assert.equal(info(join(dir.path, 'over-raw.qcow2'))['backing-filename-format'], 'raw');
    // Raw preallocation names: full writes zeros, falloc reserves.
    const full = spindle('create-image', join(dir.path, 'full.raw'), '--size', '4M', '--preallocate', 'full', '--json');
    assert.equal(full.status, 0, full.stderr);
    assert.equal(JSON.parse(full.stdout).preallocate, 'full');
    assert.ok(statSync(join(dir.path, 'full.raw')).blocks * 512 >= 4 << 20, 'every byte allocated');

    const human = spindle('inspect', top);
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, /format\s+qcow2/);
    assert.match(human.stdout, /virtual size\s+64 MiB \(67108864 bytes\)/);
    assert.match(human.stdout, /cluster size\s+64 KiB/);
    assert.match(human.stdout, new RegExp(`backing chain\\s+${base.replace(/[.]/g, '\\.')} \\(qcow2\\)`));
    // No holes in the file: the driver grows it ahead of new clusters, so native cannot allocate in io_submit.
    assert.match(human.stdout, /safe for native\s+yes/, 'a qcow2 file without holes is safe for native');
    assert.match(human.stdout, /grows the file ahead in chunks/);
    const j = JSON.parse(spindle('inspect', top, '--json').stdout);
    assert.equal(j.image.virtualSizeBytes, 64 << 20);
    assert.equal(j.image.backingChain[0].clusterSizeBytes, 128 << 10);
    const raw = JSON.parse(spindle('inspect', rawBase, '--json').stdout);
    assert.deepEqual([raw.image.format, raw.image.virtualSizeBytes, raw.image.clusterSizeBytes], ['raw', 8 << 20, null]);
  } finally {
    dir.cleanup();
  }
});

test('create-image and import: every mistake is one sentence, exit code 2 or 1, and nothing is created or overwritten', () => {
  const dir = tempDir('spindle-images-', '/var/tmp');
  try {
    const x = join(dir.path, 'x.img');
    const existing = join(dir.path, 'exists.img');
    writeFileSync(existing, 'precious');
    const usage: Array<[string[], RegExp]> = [
      [['create-image', x, '--format', 'qcow2'], /Missing --size/],
      [['create-image', x, '--size', '0', '--format', 'qcow2'], /is zero: a size must be positive/],
      [['create-image', x, '--size', '8M', '--format', 'vmdk'], /--format takes raw or qcow2, not 'vmdk'/],
      [['create-image', x, '--size', '8M', '--format', 'qcow2', '--cluster-size', '3000'], /power of two from 512 bytes to 2 MiB.*not 3000 bytes/],
      [['create-image', x, '--size', '8M', '--format', 'qcow2', '--cluster-size', '4M'], /power of two from 512 bytes to 2 MiB/],
      [['create-image', x, '--size', '8M', '--format', 'qcow2', '--cluster-size', '256'], /power of two from 512 bytes to 2 MiB/],
      [['create-image', x, '--size', '8M', '--format', 'qcow2', '--preallocate', 'lots'], /Preallocation 'lots' is not one of off, metadata, falloc, full/],
      [['create-image', x, '--size', '8M', '--preallocate', 'metadata'], /'metadata' is for qcow2/],
      [['create-image', x, '--size', '8M', '--cluster-size', '64K'], /a raw image has no clusters/],
      [['create-image', x, '--size', '8M', '--format', 'qcow2', '--backing', join(dir.path, 'nope')], /backing file .*nope does not exist/],
      [['create-image', x, '--size', '8M', '--backing', existing], /A backing file needs a qcow2 image/],
      [['import', x], /Give the image to import and the new image's path/],
      [['import', existing, x, '--format', 'vdi'], /--format takes raw or qcow2, not 'vdi'/],
    ];
    for (const [args, re] of usage) {
      const r = spindle(...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: ${r.stderr}`);
    }
    assert.equal(existsSync(x), false, 'nothing was created');
    const qed = join(dir.path, 'old.qed');
    qemuImg('create', '-q', '-f', 'qed', qed, '8M');
    for (const [args, re] of [
      [['create-image', existing, '--size', '8M', '--format', 'qcow2'], /already exists: Spindle will not overwrite it/],
      [['import', join(dir.path, 'missing.vmdk'), x], /missing\.vmdk does not exist/],
      [['import', existing, existing], /already exists: Spindle will not overwrite it/],
      [['import', qed, x], /is a QED image; Spindle imports raw, qcow2, vmdk, vdi, vhdx and vhd images/],
    ] as Array<[string[], RegExp]>) {
      const r = spindle(...args);
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: ${r.stderr}`);
    }
    assert.equal(readFileSync(existing, 'utf8'), 'precious', 'the existing file is untouched');
    assert.equal(existsSync(x), false);
  } finally {
    dir.cleanup();
  }
});

test('import converts vmdk, vdi, vhdx, qcow2 and raw into raw or qcow2 with the same contents (qemu-img compare), with progress', () => {
  const dir = tempDir('spindle-images-', '/var/tmp');
  try {
    // A raw twin with recognisable data, then the same data in every source format.
    const twin = join(dir.path, 'twin.raw');
    qemuImg('create', '-q', '-f', 'raw', twin, '8M');
    const w = spawnSync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 2M', '-c', 'write -P 0xa5 6M 512k', twin], { encoding: 'utf8' });
    assert.equal(w.status, 0, w.stderr);
    for (const fmt of ['vmdk', 'vdi', 'vhdx', 'qcow2', 'raw']) {
      const src = join(dir.path, `src.${fmt}`);
      qemuImg('convert', '-q', '-f', 'raw', '-O', fmt, twin, src);
      for (const out of ['raw', 'qcow2']) {
        const dest = join(dir.path, `from-${fmt}.${out}`);
        const r = spindle('import', src, dest, '--format', out);
        assert.equal(r.status, 0, `${fmt} -> ${out}: ${r.stderr}`);
        assert.match(r.stdout, new RegExp(`imported .*src\\.${fmt} .* as .*from-${fmt}\\.${out} \\(${out}\\)`));
        assert.match(r.stderr, /: 100%/, 'progress reaches 100%');
        assert.equal(info(dest).format, out);
        qemuImg('compare', '-q', '-f', 'raw', '-F', out, twin, dest);
      }
    }
  } finally {
    dir.cleanup();
  }
});

test('image.import over the API: progress events for that destination, the new image advised; overwrite refused', async () => {
  const s = apiSetup('spindle-api-import-', { base: '/var/tmp' });
  try {
    const src = join(s.dir, 'disk.vdi');
    qemuImg('create', '-q', '-f', 'vdi', src, '32M');
    const dest = join(s.dir, 'disk.qcow2');
    const seen: ImportProgress[] = [];
    const off = s.router.subscribe('image.progress', {}, (e) => seen.push(e as ImportProgress));
    const advice = (await s.router.call('image.import', { source: src, dest, format: 'qcow2' })) as FileAdvice;
    off();
    assert.equal(advice.format, 'qcow2');
    assert.equal(advice.image!.virtualSizeBytes, 32 << 20);
    const mine = seen.filter((e) => e.dest === dest);
    assert.ok(mine.length >= 2, `progress events: ${JSON.stringify(seen)}`);
    assert.equal(mine.at(-1)!.percent, 100);
    assert.ok(mine.every((e, i) => i === 0 || e.percent >= mine[i - 1]!.percent), 'progress only grows');
    await rejectsWith(s.router.call('image.import', { source: src, dest, format: 'raw' }), 'CONFLICT', /will not overwrite/);
    // Creating a qcow2 through the advisor API (the app's "Add disk").
    const made = (await s.router.call('advisor.createImage', {
      path: join(s.dir, 'new.qcow2'),
      sizeBytes: 16 << 20,
      preallocate: false,
      format: 'qcow2',
      clusterSizeBytes: 65536,
    })) as FileAdvice;
    assert.equal(made.format, 'qcow2');
    assert.equal(made.image!.virtualSizeBytes, 16 << 20);
  } finally {
    await s.cleanup();
  }
});
