// `spindle export` as a user runs it (a child process) on an image whose filesystem fills:
// with --enospc stop (the default) it prints a line when it parks writes, saying what is
// missing, holds them without an error for the guest, notices by itself when space is freed,
// prints a line when it resumes, and every write completes; with --enospc report the guest gets
// I/O errors. A bad --enospc is one line. And a SIGTERM sent the moment `ready` is read always
// drains and prints stats: the handlers are installed before `ready` is printed.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runLoadgen, type LoadgenOptions } from '../../electron/tools/loadgen.js';
import { makeFile, mountFs } from '../lib/loop.js';
import { within } from '../lib/wait.js';

const bin = fileURLToPath(new URL('../../../bin/spindle.js', import.meta.url));
const MiB = 1 << 20;
const REGION = 6 * MiB;  // more than the ~1 MiB left free

function startExport(args: string[]) {
  const child = spawn(process.execPath, [bin, 'export', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

async function until(what: string, done: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function fillUp(mountpoint: string): string {
  const ballast = join(mountpoint, 'ballast');
  const st = statfsSync(mountpoint);
  execFileSync('fallocate', ['-l', String(st.bfree * st.bsize - MiB), ballast]);
  return ballast;
}

const writeRun = (socket: string, verify: boolean): LoadgenOptions => ({
  socket, rw: 'write', bs: 256 << 10, iodepth: 4, queues: 1, runtimeSec: 120, size: REGION,
  verify, verifyOnly: false, rwmixread: 0, seed: 9, passes: 1,
});

test('export --enospc stop on a filesystem that fills: a line when it parks (with what is missing), a line when it resumes by itself, every write completes', async (t) => {
  const fs = mountFs('ext4', 16, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const image = makeFile(join(fs.mountpoint, 'disk.img'), 32 * MiB);  // sparse, larger than the filesystem
  const ballast = fillUp(fs.mountpoint);
  const sock = join(fs.mountpoint, 'd.sock');
  const ex = startExport([image, '--socket', sock, '--queues', '1', '--enospc', 'stop']);
  try {
    await until('ready', () => /^ready /m.test(ex.out()) || ex.child.exitCode !== null);
    assert.match(ex.out(), /^ready /m, ex.err());
    assert.match(ex.err(), /, 1 queue\(s\), enospc stop$/m);
    const run = runLoadgen(writeRun(sock, true));
    let settled = false;
    void run.finally(() => (settled = true)).catch(() => undefined);

    await until('the parked line', () => /parked \d+ writes?:/.test(ex.err()) || settled);
    const parked = ex.err().split('\n').find((l) => l.includes('parked'))!;
    assert.match(parked, new RegExp(`^spindle export: parked \\d+ writes?: ${image.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}'s filesystem is full \\(needs [\\d.]+ [KMG]?i?B more\\) — waiting for space$`));
    assert.equal(settled, false, 'the guest is waiting for its writes, no error came back');
    assert.doesNotMatch(ex.err(), /resumed/);

    unlinkSync(ballast);
    execFileSync('sync', ['-f', fs.mountpoint]);
    await until('the resumed line', () => /resumed: \d+ parked writes? completed/.test(ex.err()));
    assert.match(ex.err(), new RegExp(`^spindle export: resumed: \\d+ parked writes? completed after \\d+ s, once space was freed on ${image.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}'s filesystem$`, 'm'));
    const r = await run;
    assert.equal(r.errors, 0, 'the guest saw no I/O error');
    assert.equal(r.verify?.blocks, REGION / (256 << 10), 'every block was read back');
    assert.equal(r.verify?.mismatches, 0, 'and matched');

    ex.child.kill('SIGTERM');
    assert.equal(await ex.exited, 0);
    const stats = JSON.parse(ex.out().split('\n').find((l) => l.startsWith('stats '))!.slice(6));
    assert.equal(stats.inFlight, 0);
  } finally {
    if (ex.child.exitCode === null) ex.child.kill('SIGKILL');
  }
});

test('export --enospc report on a full filesystem: the guest gets I/O errors, nothing is parked', async (t) => {
  const fs = mountFs('ext4', 16, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const image = makeFile(join(fs.mountpoint, 'disk.img'), 32 * MiB);
  fillUp(fs.mountpoint);
  const sock = join(fs.mountpoint, 'd.sock');
  const ex = startExport([image, '--socket', sock, '--queues', '1', '--enospc', 'report']);
  try {
    await until('ready', () => /^ready /m.test(ex.out()) || ex.child.exitCode !== null);
    assert.match(ex.err(), /enospc report$/m);
    const r = await runLoadgen(writeRun(sock, false));
    assert.ok(r.errors > 0, `the guest saw I/O errors (${r.errors})`);
    ex.child.kill('SIGTERM');
    assert.equal(await ex.exited, 0);
    assert.doesNotMatch(ex.err(), /parked|waiting for space/);
  } finally {
    if (ex.child.exitCode === null) ex.child.kill('SIGKILL');
  }
});

test('a bad --enospc is refused with one line and exit code 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-export-'));
  try {
    const img = makeFile(join(dir, 'disk.img'), MiB);
    for (const bad of ['ignore', 'STOP', '']) {
      const r = spawnSync(process.execPath, [bin, 'export', img, '--socket', join(dir, 's.sock'), '--enospc', bad], { encoding: 'utf8' });
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
      assert.equal(r.stderr.trimEnd(), `spindle export: --enospc must be 'stop' (hold writes that find the filesystem full until space is freed) or 'report' (give the guest an I/O error), not '${bad}'.`);
      assert.equal(r.stdout, '');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGTERM sent the moment `ready` is read, 40 times: always drained, stats printed, exit 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-export-'));
  try {
    const img = makeFile(join(dir, 'disk.img'), 4 * MiB);
    for (let i = 0; i < 40; i++) {
      const child = spawn(process.execPath, [bin, 'export', img, '--socket', join(dir, `s${i}.sock`), '--queues', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      let sent = false;
      // Signalled from the data handler itself: the earliest moment a script can react to `ready`.
      child.stdout.on('data', (d) => {
        stdout += d;
        if (!sent && /^ready /m.test(stdout)) {
          sent = true;
          child.kill('SIGTERM');
        }
      });
      child.stderr.on('data', (d) => (stderr += d));
      const exit = await within(
        new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('close', (code, signal) => r({ code, signal }))),
        { timeoutMs: 60_000, what: `round ${i}: spindle export to exit after SIGTERM`, detail: () => stderr },
      );
      assert.ok(sent, `round ${i}: ready was printed (${stderr})`);
      assert.deepEqual(exit, { code: 0, signal: null }, `round ${i}: drained and exited 0, not killed by the signal (${stderr})`);
      assert.match(stdout, /^stats \{.*"inFlight":0/m, `round ${i}: stats printed`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
