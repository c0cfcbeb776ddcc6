// `spindle loadgen` gives up on a backend that does not answer: a socket whose
// server accepts and never replies (with --timeout and with the default), and a real Spindle disk
// that takes requests but completes none (its IOThread paused).
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DiskServer } from '../../electron/host/disks/disk-server.js';
import { DEFAULT_TIMEOUT_SEC, runLoadgen } from '../../electron/tools/loadgen.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { killOnExit } from '../lib/proc.js';

const bin = fileURLToPath(new URL('../../../bin/spindle.js', import.meta.url));

/** A unix socket server that accepts every connection and never writes a byte. */
async function silentServer(path: string) {
  const conns: Socket[] = [];
  const server = createServer((c) => conns.push(c));
  await new Promise<void>((r) => server.listen(path, r));
  return { accepted: () => conns.length, close: () => { conns.forEach((c) => c.destroy()); server.close(); } };
}

/** Runs `spindle loadgen ARGS`; fails the test if it has not ended after `deadlineMs`. */
async function loadgenCli(args: string[], deadlineMs: number): Promise<{ code: number | null; stderr: string; ms: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, [bin, 'loadgen', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  clearTimeout(timer);
  const ms = Date.now() - started;
  assert.ok(ms < deadlineMs, `loadgen still hung after ${deadlineMs} ms (killed): ${stderr}`);
  return { code, stderr, ms };
}

test('loadgen --timeout 1 against a server that accepts and never answers ends with a sentence', async (t) => {
  const dir = tempDir('spindle-lg-timeout-');
  t.after(() => dir.cleanup());
  const sock = join(dir.path, 'silent.sock');
  const server = await silentServer(sock);
  t.after(() => server.close());
  const r = await loadgenCli(['--socket', sock, '--timeout', '1', '--runtime', '1'], 20_000);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(server.accepted(), 1, 'it did connect');
  assert.match(r.stderr, new RegExp(`The backend at ${sock} did not answer the feature negotiation within 1 s \\(--timeout\\)`));
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

test(`loadgen without --timeout gives up after the default (${DEFAULT_TIMEOUT_SEC} s)`, async (t) => {
  const dir = tempDir('spindle-lg-timeout-');
  t.after(() => dir.cleanup());
  const sock = join(dir.path, 'silent.sock');
  const server = await silentServer(sock);
  t.after(() => server.close());
  const r = await loadgenCli(['--socket', sock, '--runtime', '1'], (DEFAULT_TIMEOUT_SEC + 30) * 1000);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`did not answer the feature negotiation within ${DEFAULT_TIMEOUT_SEC} s`));
  assert.ok(r.ms >= DEFAULT_TIMEOUT_SEC * 1000, `it waited the whole default (${r.ms} ms)`);
});

test('a backend that takes requests and completes none: the run ends after --timeout with what was in flight', async (t) => {
  const dir = tempDir('spindle-lg-timeout-');
  t.after(() => dir.cleanup());
  const ds = await DiskServer.start({
    path: makeFile(join(dir.path, 'a.img'), 8 << 20), socketPath: join(dir.path, 'a.sock'),
    aio: 'threads', cache: 'writeback', nowait: 'off', readOnly: false, queues: 1, serial: 'stuck',
  });
  t.after(() => ds.stop());
  await ds.pause();  // kicks are ignored: requests are taken and never completed
  const started = Date.now();
  await assert.rejects(
    runLoadgen({ socket: ds.spec.socketPath, rw: 'randread', bs: 4096, iodepth: 8, queues: 1, runtimeSec: 5, size: 0, verify: false, verifyOnly: false, rwmixread: 50, seed: 1, timeoutSec: 1 }),
    (e: unknown) => e instanceof SpindleError && /completed nothing for 1 s with 8 request\(s\) in flight \(--timeout\)/.test(e.message),
  );
  assert.ok(Date.now() - started < 15_000, `it gave up after ${Date.now() - started} ms`);
  await ds.resume();
});
