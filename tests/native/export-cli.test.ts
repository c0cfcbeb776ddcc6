// `spindle export` as a user runs it: a child process serving a real file, driven by loadgen,
// stopped with SIGINT/SIGTERM; and every bad option refused with one line and exit code 2.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runLoadgen } from '../../electron/tools/loadgen.js';
import { attachLoop, makeFile } from '../lib/loop.js';
import { waitFor } from '../lib/wait.js';

const bin = fileURLToPath(new URL('../../../bin/spindle.js', import.meta.url));

function startExport(args: string[]) {
  const child = spawn(process.execPath, [bin, 'export', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const ready = (async () => {
    await waitFor(() => /^ready /m.test(stdout) || child.exitCode !== null, { timeoutMs: 60_000, intervalMs: 10, what: 'export to print ready', detail: () => stderr });
    assert.match(stdout, /^ready /m, `export did not get ready: ${stderr}`);
  })();
  return { child, ready, exited, out: () => stdout, err: () => stderr };
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`export serves a file until ${signal}, then drains and prints its stats`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spindle-export-'));
    const img = makeFile(join(dir, 'disk.img'), 8 << 20, { written: true });
    const sock = join(dir, 'disk.sock');
    const ex = startExport([img, '--socket', sock, '--queues', '2', '--serial', 'exp0']);
    try {
      await ex.ready;
      assert.match(ex.out(), new RegExp(`^ready ${sock}$`, 'm'));
      assert.match(ex.err(), /aio threads, cache writeback, nowait auto, 2 queue\(s\)/, 'file defaults: threads + writeback');
      const r = await runLoadgen({ socket: sock, rw: 'randwrite', bs: 4096, iodepth: 16, queues: 2, runtimeSec: 0.3, size: 1 << 20, verify: true, verifyOnly: false, rwmixread: 50, seed: 3 });
      assert.equal(r.verify?.mismatches, 0);
      ex.child.kill(signal);
      assert.equal(await ex.exited, 0);
      const line = ex.out().split('\n').find((l) => l.startsWith('stats '));
      assert.ok(line, ex.out());
      const stats = JSON.parse(line.slice(6));
      assert.equal(stats.write.ops, 256);
      assert.equal(stats.write.bytes, 1 << 20);
      assert.ok(stats.read.ops >= 256);
      assert.equal(stats.errors, 0);
      assert.equal(typeof stats.submitStallMaxUs, 'number');
      assert.deepEqual(Object.keys(stats.nowait).sort(), ['readFallbacks', 'readSubmitted', 'writeFallbacks', 'writeSubmitted']);
      assert.equal(stats.inFlight, 0, 'drained before exiting');
    } finally {
      if (ex.child.exitCode === null) ex.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('export: --aio native alone picks cache none (O_DIRECT), and nowait can be set', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-export-'));
  const img = makeFile(join(dir, 'disk.img'), 4 << 20, { written: true });
  const ex = startExport([img, '--socket', join(dir, 's.sock'), '--aio', 'native', '--nowait', 'off', '--queues', '1', '--read-only']);
  try {
    await ex.ready;
    ex.child.kill('SIGTERM');
    assert.equal(await ex.exited, 0);
    // stderr is a separate pipe from the 'ready' line: read it once the process has exited.
    assert.match(ex.err(), /aio native, cache none, nowait off, 1 queue\(s\), read-only/);
  } finally {
    if (ex.child.exitCode === null) ex.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('export on a loop device defaults to native + none, and serves it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-export-'), { encoding: 'utf8' });
  const loop = attachLoop(makeFile(join('/dev/shm', `spindle-export-${process.pid}.img`), 8 << 20, { written: true }));
  const sock = join(dir, 's.sock');
  const ex = startExport([loop.device, '--socket', sock, '--queues', '1']);
  try {
    await ex.ready;
    const r = await runLoadgen({ socket: sock, rw: 'randwrite', bs: 4096, iodepth: 32, queues: 1, runtimeSec: 0.3, size: 2 << 20, verify: true, verifyOnly: false, rwmixread: 50, seed: 5 });
    assert.equal(r.verify?.mismatches, 0);
    ex.child.kill('SIGINT');
    assert.equal(await ex.exited, 0);
    assert.match(ex.out(), /^stats \{.*"write":\{"ops":512,/m);
    assert.match(ex.err(), /\(block, 8388608 bytes\), aio native, cache none, nowait auto/);
  } finally {
    if (ex.child.exitCode === null) {
      ex.child.kill('SIGKILL');
      await ex.exited;
    }
    loop.detach();
    rmSync(loop.backingFile, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test('export refuses bad options with one line and exit code 2, a missing disk with exit code 1', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-export-'));
  const img = makeFile(join(dir, 'disk.img'), 1 << 20);
  const sock = join(dir, 's.sock');
  try {
    const cases: [string[], number, RegExp][] = [
      [[img], 2, /--socket is required/],
      [['--socket', sock], 2, /give exactly one disk/],
      [[img, img, '--socket', sock], 2, /give exactly one disk/],
      [[img, '--socket', sock, '--aio', 'posix'], 2, /--aio must be one of threads, native, io_uring, not 'posix'/],
      [[img, '--socket', sock, '--cache', 'fast'], 2, /--cache must be one of writeback, none, writethrough, directsync, unsafe, not 'fast'/],
      [[img, '--socket', sock, '--nowait', 'maybe'], 2, /--nowait must be one of on, off, auto/],
      [[img, '--socket', sock, '--aio', 'native', '--cache', 'writeback'], 2, /aio 'native' needs cache 'none' or 'directsync'/],
      [[img, '--socket', sock, '--queues', '0'], 2, /--queues must be a whole number from 1 to 256, not '0'/],
      [[img, '--socket', sock, '--queues', '2.5'], 2, /--queues must be a whole number/],
      [[img, '--socket', sock, '--serial', 'x'.repeat(21)], 2, /--serial is at most 20 bytes/],
      [[img, '--socket', sock, '--bogus'], 2, /Unknown option '--bogus'/],
      [[join(dir, 'missing.img'), '--socket', sock], 1, /missing\.img does not exist/],
      [[dir, '--socket', sock], 1, /is neither an image file nor a block device/],
    ];
    for (const [args, code, re] of cases) {
      const r = spawnSync(process.execPath, [bin, 'export', ...args], { encoding: 'utf8' });
      assert.equal(r.status, code, `${args.join(' ')}: ${r.stderr}`);
      const first = r.stderr.split('\n')[0]!;
      assert.match(first, re, args.join(' '));
      assert.match(first, /^spindle export: /);
      assert.equal(r.stdout, '', 'nothing on stdout: no "ready" line');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
