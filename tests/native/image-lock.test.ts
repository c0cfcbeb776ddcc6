// One writer per image, with real processes: `spindle export`, qemu-io,
// qemu-storage-daemon, `spindle bench-engines` and `spindle inspect` on one image, a mounted loop
// device's backing file, and a live mode switch (and an IOThread restart) under qemu-io's attempts.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DiskServer, type DiskEvent } from '../../electron/host/disks/disk-server.js';
import { attachLoop, makeFile, mountFs, tempDir } from '../lib/loop.js';
import { killOnExit, stopChild } from '../lib/proc.js';
import { startQsd } from '../lib/qsd.js';
import { crashIoThread, useTestIoThread } from '../lib/io-thread-hooks.js';
import { within } from '../lib/wait.js';

useTestIoThread();  // crashIoThread below

const bin = fileURLToPath(new URL('../../../bin/spindle.js', import.meta.url));
const QEMU_WRITE_LOCK = /Failed to get "write" lock/;

/** `spindle ARGS` to its end. */
function spindle(args: string[], timeoutMs = 120_000) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A running `spindle export`, resolved once it printed `ready` (rejects with its stderr if it exits first). */
async function startExport(img: string, socket: string, extra: string[] = []) {
  const child = spawn(process.execPath, [bin, 'export', img, '--socket', socket, '--queues', '1', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const deadline = Date.now() + 60_000;
  while (!/^ready /m.test(out)) {
    if (child.exitCode !== null) throw new Error(`export exited (${child.exitCode}) before ready: ${err}`);
    if (Date.now() > deadline) throw new Error(`export did not print ready within 60 s: ${err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { pid: child.pid!, stop: () => stopChild(child) };
}

/** qemu-io writing 4 KiB at 0 (the way QEMU opens an image read-write). */
function qemuIoWrite(img: string, pattern = 0x5a) {
  const r = spawnSync('qemu-io', ['-f', 'raw', '-c', `write -P ${pattern} 0 4k`, img], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

const digest = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

test('two read-write exports of one image: the second is refused, naming the first; free again once it stops', async (t) => {
  const dir = tempDir('spindle-lock-');
  t.after(() => dir.cleanup());
  const img = makeFile(join(dir.path, 'a.img'), 8 << 20);
  const first = await startExport(img, join(dir.path, 'a.sock'));
  try {
    const second = spindle(['export', img, '--socket', join(dir.path, 'b.sock')]);
    assert.equal(second.status, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`is in use: spindle export \\(pid ${first.pid}\\) has it open for writing`));
    assert.equal(second.stderr.trim().split('\n').length, 1, 'one sentence');
  } finally {
    assert.equal(await first.stop(), 0);
  }
  const again = await startExport(img, join(dir.path, 'c.sock'));
  assert.equal(await again.stop(), 0);
});

test('QEMU and Spindle refuse each other: qemu-io cannot write an image an export serves, and can once it stopped', async (t) => {
  const dir = tempDir('spindle-lock-');
  t.after(() => dir.cleanup());
  const img = makeFile(join(dir.path, 'a.img'), 8 << 20, { written: true });
  const before = digest(img);
  const ex = await startExport(img, join(dir.path, 'a.sock'));
  try {
    const q = qemuIoWrite(img);
    assert.notEqual(q.status, 0, q.output);
    assert.match(q.output, QEMU_WRITE_LOCK);
  } finally {
    await ex.stop();
  }
  assert.equal(digest(img), before, 'qemu-io wrote nothing while refused');
  const q = qemuIoWrite(img);
  assert.equal(q.status, 0, q.output);
  assert.notEqual(digest(img), before, 'qemu-io wrote once the export was gone');
});

test('an image qemu-storage-daemon holds is refused, read-write and read-only, with a sentence naming it', async (t) => {
  const dir = tempDir('spindle-lock-');
  t.after(() => dir.cleanup());
  const img = makeFile(join(dir.path, 'a.img'), 8 << 20);
  const qsd = await startQsd({ path: img, socket: join(dir.path, 'qsd.sock'), aio: 'threads', cache: 'writeback' });
  try {
    const rw = spindle(['export', img, '--socket', join(dir.path, 'a.sock')]);
    assert.equal(rw.status, 1, rw.stderr);
    assert.match(rw.stderr, new RegExp(`is in use: qemu-storage-daemon \\(pid ${qsd.pid}\\) has it open for writing\\. Spindle takes QEMU's image locks`));
    const ro = spindle(['export', img, '--socket', join(dir.path, 'b.sock'), '--read-only']);
    assert.equal(ro.status, 1, ro.stderr);
    assert.match(ro.stderr, new RegExp(`qemu-storage-daemon \\(pid ${qsd.pid}\\) has it open for writing, so a read-only disk would see its data change`));
  } finally {
    await qsd.stop();
  }
});

test('read-only exports share an image; meanwhile a writer (Spindle or qemu-io) is refused', async (t) => {
  const dir = tempDir('spindle-lock-');
  t.after(() => dir.cleanup());
  const img = makeFile(join(dir.path, 'a.img'), 8 << 20);
  const a = await startExport(img, join(dir.path, 'a.sock'), ['--read-only']);
  const b = await startExport(img, join(dir.path, 'b.sock'), ['--read-only']);
  try {
    const rw = spindle(['export', img, '--socket', join(dir.path, 'c.sock')]);
    assert.equal(rw.status, 1, rw.stderr);
    assert.match(rw.stderr, /spindle export \(pid \d+\) and spindle export \(pid \d+\) have it open and allow no writer meanwhile.*open this disk read-only too/);
    assert.ok(rw.stderr.includes(`pid ${a.pid}`) && rw.stderr.includes(`pid ${b.pid}`), rw.stderr);
    const q = qemuIoWrite(img);
    assert.notEqual(q.status, 0, q.output);
    assert.match(q.output, QEMU_WRITE_LOCK);
  } finally {
    await a.stop();
    await b.stop();
  }
});

test('bench-engines --overwrite refuses an image a live export serves, and leaves its data alone', async (t) => {
  const dir = tempDir('spindle-lock-');
  t.after(() => dir.cleanup());
  const img = makeFile(join(dir.path, 'a.img'), 16 << 20, { written: true });
  const before = digest(img);
  const ex = await startExport(img, join(dir.path, 'a.sock'));
  try {
    const r = spindle(['bench-engines', img, '--overwrite', '--runtime', '1']);
    assert.equal(r.status, 1, `${r.stdout}${r.stderr}`);
    assert.match(r.stderr, new RegExp(`is in use: spindle export \\(pid ${ex.pid}\\) has it open for writing`));
  } finally {
    await ex.stop();
  }
  assert.equal(digest(img), before, 'nothing of the image was overwritten');
});

test('inspect says who holds an image: a Spindle writer, qemu-storage-daemon, read-only readers, nobody', async (t) => {
  const dir = tempDir('spindle-lock-');
  t.after(() => dir.cleanup());
  const img = makeFile(join(dir.path, 'a.img'), 8 << 20);
  const inUse = () => {
    const r = spindle(['inspect', img]);
    assert.equal(r.status, 0, r.stderr);
    return /^\s+in use\s+(.*)$/m.exec(r.stdout)?.[1];
  };
  assert.equal(inUse(), 'no');
  const ex = await startExport(img, join(dir.path, 'a.sock'));
  try {
    assert.equal(inUse(), `yes: written by spindle export (pid ${ex.pid})`);
    const json = JSON.parse(spindle(['inspect', img, '--json']).stdout);
    assert.equal(json.inUse, true);
    assert.deepEqual(json.imageUse.writers, [`spindle export (pid ${ex.pid})`]);
    assert.ok(json.reasons.some((s: string) => s.includes(`open for writing by spindle export (pid ${ex.pid})`)), json.reasons.join(' | '));
  } finally {
    await ex.stop();
  }
  const qsd = await startQsd({ path: img, socket: join(dir.path, 'qsd.sock'), aio: 'threads', cache: 'writeback' });
  try {
    assert.equal(inUse(), `yes: written by qemu-storage-daemon (pid ${qsd.pid})`);
  } finally {
    await qsd.stop();
  }
  const ro = await startExport(img, join(dir.path, 'b.sock'), ['--read-only']);
  try {
    assert.equal(inUse(), `yes: read by spindle export (pid ${ro.pid})`);
  } finally {
    await ro.stop();
  }
  assert.equal(inUse(), 'no');
});

test('a host block device is locked too: qemu-io is refused, and a second export names the first', async (t) => {
  const dir = tempDir('spindle-lock-');
  t.after(() => dir.cleanup());
  const loop = attachLoop(makeFile(join(dir.path, 'dev.img'), 16 << 20));
  t.after(() => loop.detach());
  const ex = await startExport(loop.device, join(dir.path, 'a.sock'));
  try {
    const q = qemuIoWrite(loop.device);
    assert.notEqual(q.status, 0, q.output);
    assert.match(q.output, QEMU_WRITE_LOCK);
    // The device is opened O_EXCL, so the second export gets EBUSY: the locks say who holds it.
    const second = spindle(['export', loop.device, '--socket', join(dir.path, 'b.sock')]);
    assert.equal(second.status, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`${loop.device} is open for writing by spindle export \\(pid ${ex.pid}\\): Spindle will not serve it`));
  } finally {
    await ex.stop();
  }
  const q = qemuIoWrite(loop.device);
  assert.equal(q.status, 0, q.output);
});

test('the file behind a mounted loop device is refused read-write, naming the device and the mount point', async (t) => {
  const fs = mountFs('ext4', 16, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const backing = fs.device.backingFile;
  const before = digest(backing);
  const r = spindle(['export', backing, '--socket', join(fs.mountpoint, '..', 'a.sock')]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`is the backing file of ${fs.device.device}, which is mounted at ${fs.mountpoint}: a guest writing the file would corrupt`));
  assert.equal(digest(backing), before);
  const i = spindle(['inspect', backing]);
  assert.equal(i.status, 0, i.stderr);
  assert.match(i.stdout, new RegExp(`in use\\s+yes: backs ${fs.device.device} \\(mounted at ${fs.mountpoint}\\)`));
  // Reading it is harmless to the host: a read-only export is allowed.
  const ro = await startExport(backing, join(fs.mountpoint, '..', 'b.sock'), ['--read-only']);
  await ro.stop();
});

test('a live mode switch and an IOThread restart keep the image locked: qemu-io is refused before, during and after', async (t) => {
  const dir = tempDir('spindle-lock-');
  t.after(() => dir.cleanup());
  const img = makeFile(join(dir.path, 'a.img'), 8 << 20, { written: true });
  const ds = await DiskServer.start({
    path: img, socketPath: join(dir.path, 'a.sock'), aio: 'threads', cache: 'writeback', nowait: 'off', readOnly: false, queues: 1, serial: 'lock',
  });
  let stopped = false;
  t.after(async () => { if (!stopped) await ds.stop(); });
  const refused = (when: string): void => {
    const q = qemuIoWrite(img);
    assert.notEqual(q.status, 0, `${when}: qemu-io wrote: ${q.output}`);
    assert.match(q.output, QEMU_WRITE_LOCK, when);
  };
  refused('before any switch');
  // qemu-io keeps trying while the switches run: every attempt must be refused.
  let switching = true;
  const attempts: Array<{ status: number | null; output: string }> = [];
  const prober = (async () => {
    while (switching) {
      const child = spawn('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 0 4k', img], { stdio: ['ignore', 'pipe', 'pipe'] });
      killOnExit(child);
      let output = '';
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const status = await within(
        new Promise<number | null>((r) => child.once('close', (code) => r(code))), // after its output
        { timeoutMs: 120_000, what: 'qemu-io to exit', detail: () => output },
      );
      attempts.push({ status, output });
    }
  })();
  const modes = [
    { aio: 'io_uring', cache: 'none' }, { aio: 'native', cache: 'none' }, { aio: 'threads', cache: 'writethrough' },
    { aio: 'native', cache: 'directsync' }, { aio: 'threads', cache: 'writeback' },
  ] as const;
  try {
    for (let round = 0; round < 2; round++) {
      for (const m of modes) {
        await ds.reconfigure(m);
        assert.deepEqual({ aio: ds.currentModes.aio, cache: ds.currentModes.cache }, m);
        refused(`after switching to aio ${m.aio}, cache ${m.cache}`);
      }
    }
  } finally {
    switching = false;
    await prober;
  }
  assert.ok(attempts.length >= 5, `qemu-io tried ${attempts.length} times during the switches`);
  for (const a of attempts) {
    assert.notEqual(a.status, 0, `qemu-io wrote during a switch: ${a.output}`);
    assert.match(a.output, QEMU_WRITE_LOCK);
  }
  // A crashed IOThread's descriptors are closed, and the new one takes the locks again.
  const restarted = new Promise<void>((resolve, reject) => ds.on('event', (e: DiskEvent) => {
    if (e.kind === 'restarted') resolve();
    if (e.kind === 'failed') reject(new Error(e.reason));
  }));
  await crashIoThread(ds);
  await Promise.race([restarted, new Promise((_, reject) => setTimeout(() => reject(new Error('the IOThread did not restart within 60 s')), 60_000))]);
  refused('after the IOThread restarted');
  await ds.stop();
  stopped = true;
  const q = qemuIoWrite(img);
  assert.equal(q.status, 0, `the lock must go with the disk: ${q.output}`);
});
