// `spindle loadgen` end to end against a real vhost-user-blk backend: Debian's
// qemu-storage-daemon exporting an image file. Runs the CLI as users do and reads its output.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, openSync, writeSync, closeSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../electron/dataplane/native/addon.js';

const SPINDLE = join(projectRoot, 'bin/spindle.js');

interface Export { dir: string; img: string; sock: string; qsd: ChildProcess; stop(): Promise<void> }

async function exportImage(opts: { sizeBytes: number; writable?: boolean; queues?: number }): Promise<Export> {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-loadgen-'));
  const img = join(dir, 'disk.img');
  const sock = join(dir, 'qsd.sock');
  closeSync(openSync(img, 'w'));
  truncateSync(img, opts.sizeBytes);
  const qsd = spawn('qemu-storage-daemon', [
    '--blockdev', `driver=file,node-name=f0,filename=${img}`,
    '--export', `type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=${sock},writable=${opts.writable === false ? 'off' : 'on'}`
      + (opts.queues ? `,num-queues=${opts.queues}` : ''),
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qsd.stderr!.on('data', (d) => (stderr += d));
  const stop = async () => {
    if (qsd.exitCode === null && qsd.signalCode === null) {
      qsd.kill('SIGTERM');
      await new Promise((r) => qsd.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const end = Date.now() + 10_000;
  while (!existsSync(sock) && qsd.exitCode === null && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  if (!existsSync(sock)) {
    await stop();
    throw new Error(`qemu-storage-daemon did not start: ${stderr}`);
  }
  return { dir, img, sock, qsd, stop };
}

/** Runs `spindle loadgen` asynchronously (the backend runs in this process's event loop's child). */
function loadgen(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [SPINDLE, 'loadgen', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

test('randwrite --verify against qemu-storage-daemon passes, and --verify-only finds a block corrupted on the host', async () => {
  const e = await exportImage({ sizeBytes: 16 << 20 });
  try {
    const r = await loadgen(['--socket', e.sock, '--rw', 'randwrite', '--bs', '4k', '--iodepth', '32', '--size', '8M', '--verify', '--seed', '42', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    for (const k of ['rw', 'bs', 'iodepth', 'queues', 'sizeBytes', 'runtimeSec', 'ios', 'reads', 'writes', 'errors', 'iops', 'mbps', 'latencyUs', 'verify']) {
      assert.ok(k in j, `JSON field ${k}`);
    }
    assert.equal(j.rw, 'randwrite');
    assert.equal(j.errors, 0);
    assert.equal(j.writes, 2048, 'every 4k block of 8M written once');
    assert.equal(j.reads, 2048, 'and read back once');
    assert.deepEqual(j.verify, { blocks: 2048, mismatches: 0, firstMismatchOffset: null });
    assert.ok(j.iops > 0 && j.mbps > 0);
    assert.ok(j.latencyUs.p50 > 0 && j.latencyUs.p99 >= j.latencyUs.p50 && j.latencyUs.max >= j.latencyUs.p99);

    // The pattern is really on the disk: re-checking it without writing passes...
    const again = await loadgen(['--socket', e.sock, '--rw', 'randread', '--size', '8M', '--verify-only', '--seed', '42', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).verify.mismatches, 0);
    // ...a different seed does not match anything...
    const other = await loadgen(['--socket', e.sock, '--size', '1M', '--verify-only', '--seed', '43', '--json']);
    assert.equal(other.code, 1);
    assert.equal(JSON.parse(other.stdout).verify.mismatches, 256);
    // ...and one byte changed behind the backend's back is found, at its block.
    const fd = openSync(e.img, 'r+');
    writeSync(fd, Buffer.from([0x5a]), 0, 1, 5 * 4096 + 100);
    closeSync(fd);
    const bad = await loadgen(['--socket', e.sock, '--size', '8M', '--verify-only', '--seed', '42']);
    assert.equal(bad.code, 1, 'exit non-zero on a mismatch');
    assert.match(bad.stdout, /verify: 1 of 2048 blocks do not match \(first at byte offset 20480\)/);
  } finally {
    await e.stop();
  }
});

test('sequential and mixed workloads on two queues report per-run numbers and text output', async () => {
  const e = await exportImage({ sizeBytes: 8 << 20, queues: 2 });
  try {
    for (const rw of ['read', 'write', 'randrw']) {
      const r = await loadgen(['--socket', e.sock, '--rw', rw, '--bs', '64k', '--iodepth', '8', '--queues', '2', '--runtime', '0.5', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.queues, 2);
      assert.equal(j.errors, 0);
      assert.ok(j.ios > 0);
      if (rw === 'read') assert.equal(j.writes, 0);
      if (rw === 'write') assert.equal(j.reads, 0);
      if (rw === 'randrw') assert.ok(j.reads > 0 && j.writes > 0);
      assert.equal(j.verify, null);
    }
    const t = await loadgen(['--socket', e.sock, '--runtime', '0.3', '--queues', '2']);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^loadgen: rw=randread bs=4096 iodepth=32 queues=2 /);
    assert.match(t.stdout, /IOPS=\d+ {2}MB\/s=[\d.]+ {2}latency p50=[\d.]+ us {2}p99=[\d.]+ us/);
  } finally {
    await e.stop();
  }
});

test('bad input: clear errors, exit codes 1 (runtime) or 2 (usage)', async () => {
  const e = await exportImage({ sizeBytes: 4 << 20 });
  const ro = await exportImage({ sizeBytes: 4 << 20, writable: false });
  try {
    const cases: [string[], number, RegExp][] = [
      [['--rw', 'randread'], 2, /--socket is required/],
      [['--socket', e.sock, '--rw', 'sideways'], 2, /--rw must be one of randread, randwrite, read, write, randrw, not 'sideways'/],
      [['--socket', e.sock, '--bs', '1000'], 2, /--bs must be a multiple of 512 bytes/],
      [['--socket', e.sock, '--bs', 'lots'], 2, /--bs 'lots' is not a size/],
      [['--socket', e.sock, '--iodepth', '0'], 2, /--iodepth must be a whole number from 1 to 256, not '0'/],
      [['--socket', e.sock, '--runtime=-1'], 2, /--runtime must be seconds between 0 and 86400, not '-1'/],
      [['--socket', e.sock, '--bogus'], 2, /Unknown option '--bogus'/],
      [['--socket', e.sock, '--size', '8M'], 2, /--size 8388608 is larger than the disk \(4194304 bytes\)/],
      [['--socket', e.sock, '--queues', '3'], 2, /at most 1 queues; asked for 3|offers 1 queue\(s\); asked for 3/],
      [['--socket', join(e.dir, 'missing.sock')], 1, /Cannot connect to the vhost-user backend at .*missing\.sock/],
      [['--socket', ro.sock, '--rw', 'randwrite'], 1, /The disk is read-only; 'randwrite' needs to write/],
      [['--socket', ro.sock, '--verify'], 1, /read-only; 'randread' with --verify needs to write/],
    ];
    for (const [args, code, msg] of cases) {
      const r = await loadgen(args.some((a) => a.startsWith('--runtime')) ? args : [...args, '--runtime', '0.2']);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg, args.join(' '));
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    }
    // The read-only disk still serves reads.
    const r = await loadgen(['--socket', ro.sock, '--rw', 'randread', '--runtime', '0.2', '--json']);
    assert.equal(r.code, 0, r.stderr);
  } finally {
    await e.stop();
    await ro.stop();
  }
});

test('qemu-storage-daemon is installed (the peer these tests need)', () => {
  assert.equal(spawnSync('qemu-storage-daemon', ['--version']).status, 0);
});
