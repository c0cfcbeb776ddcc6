// Non-raw images are refused, never served as raw bytes: every format qemu-img can
// make here (LUKS with a secret), through `spindle export`, `spindle inspect`, vm.create and
// disk.attach, with the image left as it was; raw images (and raw data that merely contains a
// magic word past the header) are still served, and `spindle export` serves qcow2 through its
// qcow2 driver, saying it detected the format.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiSetup, rejectsWith } from '../lib/api.js';
import { killOnExit, stopChild } from '../lib/proc.js';
import { makeFile, tempDir } from '../lib/loop.js';
import type { VmInfo } from '../../electron/shared/api.js';

const bin = fileURLToPath(new URL('../../../bin/spindle.js', import.meta.url));
const digest = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

interface Case { label: string; format: string; name: RegExp; args: string[] }

/** qemu-img create arguments per case; `name` is how the refusal names the format. */
const QCOW2: Case = { label: 'qcow2', format: 'qcow2', name: /is a qcow2 image/, args: ['-f', 'qcow2'] };
const CASES: Case[] = [
  { label: 'qcow (v1)', format: 'qcow', name: /is a qcow \(version 1\) image/, args: ['-f', 'qcow'] },
  { label: 'qed', format: 'qed', name: /is a QED image/, args: ['-f', 'qed'] },
  { label: 'vdi', format: 'vdi', name: /is a VirtualBox \(vdi\) image/, args: ['-f', 'vdi'] },
  { label: 'vmdk (sparse)', format: 'vmdk', name: /is a VMware \(vmdk\) image/, args: ['-f', 'vmdk'] },
  { label: 'vmdk (descriptor of a flat extent)', format: 'vmdk', name: /is a VMware \(vmdk\) image/, args: ['-f', 'vmdk', '-o', 'subformat=monolithicFlat'] },
  { label: 'vpc (dynamic)', format: 'vpc', name: /is a Virtual PC \(vhd\/vpc\) image/, args: ['-f', 'vpc'] },
  { label: 'vpc (fixed: a footer only)', format: 'vpc', name: /is a Virtual PC \(vhd\/vpc\) image/, args: ['-f', 'vpc', '-o', 'subformat=fixed'] },
  { label: 'vhdx', format: 'vhdx', name: /is a Hyper-V \(vhdx\) image/, args: ['-f', 'vhdx'] },
  { label: 'parallels', format: 'parallels', name: /is a Parallels image/, args: ['-f', 'parallels'] },
  { label: 'luks', format: 'luks', name: /is a LUKS-encrypted volume; Spindle serves raw and qcow2 images and would hand the guest its ciphertext/, args: ['--object', 'secret,id=sec0,data=spindle-test', '-f', 'luks', '-o', 'key-secret=sec0,iter-time=250'] },
];

function makeImage(dir: string, c: Case, i: number): string {
  const path = join(dir, `img${i}.${c.format}`);
  // qemu-img's LUKS key-slot timing (crypto/pbkdf.c) now and then measures 0 ms of thread CPU on
  // this VM and fails with "Unable to get accurate CPU usage": that one error is retried.
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync('qemu-img', ['create', '-q', ...c.args, path, '16M'], { stdio: ['ignore', 'pipe', 'pipe'] });
      return path;
    } catch (err) {
      const stderr = String((err as { stderr?: unknown }).stderr ?? '');
      if (attempt >= 20 || !stderr.includes('Unable to get accurate CPU usage')) throw err;
    }
  }
}

/** `spindle export` of a path: its exit code and output (a served disk is stopped with SIGTERM once ready). */
async function tryExport(path: string, socket: string): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [bin, 'export', path, '--socket', socket, '--queues', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const deadline = Date.now() + 60_000;
  while (child.exitCode === null && !/^ready /m.test(out)) {
    if (Date.now() > deadline) throw new Error(`export neither refused nor served ${path} within 60 s: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const code = child.exitCode ?? await stopChild(child);
  await new Promise((r) => (child.stdout.readableEnded ? r(null) : child.stdout.once('end', r)));
  return { code, out, err };
}

test('every non-raw format qemu-img makes is refused by export, named by inspect, and left untouched', async (t) => {
  const dir = tempDir('spindle-format-');
  t.after(() => dir.cleanup());
  for (const [i, c] of CASES.entries()) {
    const img = makeImage(dir.path, c, i);
    const before = digest(img);
    const r = await tryExport(img, join(dir.path, `s${i}.sock`));
    assert.equal(r.code, 1, `${c.label}: export should refuse it: ${r.out}${r.err}`);
    assert.doesNotMatch(r.out, /^ready/m, c.label);
    assert.match(r.err, c.name, c.label);
    if (c.format !== 'luks') {
      assert.match(r.err, new RegExp(`Spindle serves raw and qcow2 images.*qemu-img convert -f ${c.format} -O raw ${img} ${join(dir.path, `img${i}.raw`)}`), c.label);
    }
    assert.equal(r.err.trim().split('\n').length, 1, `${c.label}: one sentence`);
    assert.equal(digest(img), before, `${c.label}: the image is unchanged`);
    const ins = spawnSync(process.execPath, [bin, 'inspect', img, '--json'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(ins.status, 0, `${c.label}: ${ins.stderr}`);
    const json = JSON.parse(ins.stdout);
    assert.equal(json.format, c.format, c.label);
    // qcow2 is shown as a disk (its virtual size and chain); every other format is named as refused.
    if (c.format === 'qcow2') assert.equal(json.image.format, 'qcow2', c.label);
    else assert.match(json.reasons[0], c.name, c.label);
  }
});

test('export detects a qcow2 image and serves it through the qcow2 driver; --format raw serves its bytes without a probe', async (t) => {
  const dir = tempDir('spindle-format-');
  t.after(() => dir.cleanup());
  const qcow = makeImage(dir.path, QCOW2, 0);
  const before = digest(qcow);
  const served = await tryExport(qcow, join(dir.path, 'q.sock'));
  assert.equal(served.code, 0, served.err);
  assert.match(served.err, /^spindle export: qcow2 \(detected; --format says it yourself\) .*\(file, 16777216 bytes\)/m);
  assert.equal(digest(qcow), before, 'serving it without writes left it as it was');
  const child = spawnSync(process.execPath, [bin, 'export', qcow, '--socket', join(dir.path, 'x.sock'), '--format', 'vmdk'], { encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(child.status, 0);
  assert.match(child.stderr, /--format must be raw or qcow2, not 'vmdk'/);
});

test('the converted raw image is served, and raw data with a magic word past the header too', async (t) => {
  const dir = tempDir('spindle-format-');
  t.after(() => dir.cleanup());
  const qcow = makeImage(dir.path, CASES[0]!, 0);
  const refusal = await tryExport(qcow, join(dir.path, 'q.sock'));
  assert.equal(refusal.code, 1, refusal.err);
  // Run the command the refusal suggests, as printed.
  const suggested = /qemu-img convert (.*?) and use/.exec(refusal.err)?.[1];
  assert.ok(suggested, refusal.err);
  execFileSync('qemu-img', ['convert', ...suggested.split(' ')]);
  const raw = join(dir.path, 'img0.raw');
  const inspectRaw = spawnSync(process.execPath, [bin, 'inspect', raw], { encoding: 'utf8', timeout: 60_000 });
  assert.match(inspectRaw.stdout, /^\s+format\s+raw$/m, inspectRaw.stdout);
  const served = await tryExport(raw, join(dir.path, 'r.sock'));
  assert.equal(served.code, 0, served.err);
  assert.match(served.out, /^ready /m);

  // A raw disk whose data holds magic words anywhere but where a format puts them, and a last
  // sector that starts like a VHD footer but is not one (its checksum is wrong).
  const odd = makeFile(join(dir.path, 'odd.img'), 8 << 20);
  const junk = Buffer.alloc(512);
  junk.write('conectix', 0, 'latin1');
  const fd = readFileSync(odd);
  fd.write('QFI\xfb', 4096, 'latin1');
  fd.write('KDMV', 1 << 20, 'latin1');
  junk.copy(fd, fd.length - 512);
  writeFileSync(odd, fd);
  const oddServed = await tryExport(odd, join(dir.path, 'o.sock'));
  assert.equal(oddServed.code, 0, oddServed.err);
});

test('vm.create and disk.attach store a qcow2 image as a qcow2 disk, and refuse a LUKS volume with a sentence', async () => {
  const s = apiSetup('spindle-format-api-');
  try {
    const qcow = makeImage(s.dir, QCOW2, 0);
    const luks = makeImage(s.dir, CASES.at(-1)!, 1);
    const q = (await s.router.call('vm.create', { name: 'q', disks: [{ path: qcow }] })) as VmInfo;
    assert.equal(q.config.disks[0]!.format, 'qcow2');
    const raw = makeFile(join(s.dir, 'raw.img'), 8 << 20);
    const vm = (await s.router.call('vm.create', { name: 'r', disks: [{ path: raw }] })) as VmInfo;
    const attached = (await s.router.call('disk.attach', { vmId: vm.config.id, disk: { path: qcow } })) as VmInfo;
    assert.deepEqual(
      attached.config.disks.map((d) => d.format),
      ['raw', 'qcow2'],
    );
    await rejectsWith(s.router.call('disk.attach', { vmId: vm.config.id, disk: { path: luks, readOnly: true } }), 'UNSUPPORTED_FORMAT', /LUKS-encrypted/);
  } finally {
    await s.cleanup();
  }
});
