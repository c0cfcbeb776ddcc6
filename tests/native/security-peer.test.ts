// A disk socket serves only the QEMU process Spindle started (SO_PEERCRED pid check).
// The disk starts before QEMU exists, so it holds connections in the listen backlog until
// DiskServer.expectPeer(pid) names the frontend: no connection is ever served unchecked.
// The "QEMU" here is a real separate process (`spindle loadgen`, a vhost-user frontend); the
// intruder is another real process of the same user.
import { test, type TestContext } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DiskServer, type DiskEvent, type DiskSpec } from '../../electron/host/disks/disk-server.js';
import { runLoadgen, type LoadgenOptions } from '../../electron/tools/loadgen.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { makeFile } from '../lib/loop.js';
import { waitFor, within } from '../lib/wait.js';

const BIN = resolve(import.meta.dirname, '../../../bin/spindle.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Worker events cross a thread: the socket can close here before the log line arrives. */
async function logged(events: DiskEvent[], re: RegExp | string): Promise<boolean> {
  const hit = () => events.some((e) => e.kind === 'log' && (typeof re === 'string' ? e.line.includes(re) : re.test(e.line)));
  return waitFor(hit, { timeoutMs: 30_000, what: `a log line ${String(re)}`, detail: () => JSON.stringify(events) });
}

function disk(dir: string, o: Partial<DiskSpec> = {}): DiskSpec {
  return {
    path: makeFile(join(dir, 'd.img'), 8 << 20, { written: true }),
    socketPath: join(dir, 'sockets', 'd.sock'),
    aio: 'threads', cache: 'writeback', nowait: 'off', readOnly: false, queues: 1, serial: 'peer', ...o,
  };
}

const load = (socket: string): LoadgenOptions => ({
  socket, rw: 'randrw', bs: 4096, iodepth: 8, queues: 1, runtimeSec: 0.3, size: 0,
  verify: false, verifyOnly: false, rwmixread: 50, seed: 3,
});

/** One test's temp dir, the disk server it runs and the processes it spawns: all gone after the
 *  test, whatever happened. stop() is the test's own orderly stop; what it left running is stopped here. */
function peerFixture(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-peer-'));
  const children: ChildProcess[] = [];
  let live: DiskServer | null = null;
  t.after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) { c.kill('SIGKILL'); await once(c, 'exit'); }
    await live?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    children,
    start: async (spec: DiskSpec) => (live = await DiskServer.start(spec)),
    stop: async (ds: DiskServer) => { await ds.stop(); if (live === ds) live = null; },
  };
}

/** A separate process driving the disk: its exit code and output. */
function frontendProcess(socket: string): { child: ChildProcess; done: Promise<{ code: number | null; out: string }> } {
  const child = spawn(process.execPath, [BIN, 'loadgen', '--socket', socket, '--runtime', '0.3', '--rw', 'randrw', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const done = within(once(child, 'exit'), { timeoutMs: 120_000, what: 'the loadgen frontend process to exit', detail: () => out }).then(([code]) => ({
    code: code as number | null,
    out,
  }));
  return { child, done };
}

test('awaitPeer: nothing is served before expectPeer; then only the named process is, an intruder is refused and logged', async (t) => {
  const { dir, children, start, stop } = peerFixture(t);
  const ds = await start(disk(dir, { awaitPeer: true }));
  const events: DiskEvent[] = [];
  ds.on('event', (e) => events.push(e));

  // The intruder connects first (before the real frontend's pid is known) and waits in the backlog.
  const intruder = frontendProcess(ds.spec.socketPath);
  children.push(intruder.child);
  await sleep(300);
  // "QEMU" is spawned next; its pid is known right after spawn, before it is accepted.
  const qemu = frontendProcess(ds.spec.socketPath);
  children.push(qemu.child);
  await sleep(300);
  assert.equal(events.filter((e) => e.kind === 'connected').length, 0, 'nothing accepted before the expected pid is known');

  await ds.expectPeer(qemu.child.pid!);
  const q = await qemu.done;
  assert.equal(q.code, 0, `the legitimate frontend ran: ${q.out}`);
  const r = JSON.parse(q.out.trim().split('\n').pop()!);
  assert.equal(r.errors, 0);
  assert.ok(r.ios > 0);

  const i = await intruder.done;
  assert.notEqual(i.code, 0, 'the intruder was cut off');
  assert.ok(await logged(events, `refused a frontend connection from pid ${intruder.child.pid}`), `refusal logged: ${JSON.stringify(events)}`);
  assert.deepEqual(events.filter((e) => e.kind === 'connected').map((e) => (e as { pid: number | null }).pid), [qemu.child.pid]);

  // A connection from this (Spindle's own) process is not the expected frontend either.
  await assert.rejects(runLoadgen(load(ds.spec.socketPath)));
  assert.ok(await logged(events, `refused a frontend connection from pid ${process.pid}`));

  // Re-pointed (e.g. QEMU restarted with a new pid): the new process is served.
  await ds.expectPeer(process.pid);
  const ok = await runLoadgen(load(ds.spec.socketPath));
  assert.equal(ok.errors, 0);

  await assert.rejects(ds.expectPeer(0), (e: unknown) => e instanceof SpindleError && e.code === 'INVALID_ARGUMENT' && /process id/.test(e.message));
  await assert.rejects(ds.expectPeer(1.5), (e: unknown) => e instanceof SpindleError && e.code === 'INVALID_ARGUMENT');
  await stop(ds);
});

test('peerPid given at start: only that pid is served; without any peer option every local frontend is', async (t) => {
  const { dir, start, stop } = peerFixture(t);
  let ds = await start(disk(dir, { peerPid: 999_999_999 }));
  const events: DiskEvent[] = [];
  ds.on('event', (e) => events.push(e));
  await assert.rejects(runLoadgen(load(ds.spec.socketPath)));
  assert.ok(await logged(events, /refused a frontend connection from pid \d+ \(uid \d+\): not the process this disk belongs to/));
  await stop(ds);
  ds = await start(disk(dir));
  assert.equal((await runLoadgen(load(ds.spec.socketPath))).errors, 0);
  await stop(ds);
});

test('a disk socket is 0600 inside a 0700 directory', async (t) => {
  const { dir, start, stop } = peerFixture(t);
  const ds = await start(disk(dir, { socketPath: join(dir, 'fresh', 'd.sock') }));
  assert.equal(statSync(join(dir, 'fresh')).mode & 0o777, 0o700);
  assert.equal(statSync(ds.spec.socketPath).mode & 0o777, 0o600);
  await stop(ds);
});

test('real QEMU: spawned after its disk listens, held until expectPeer(pid), then realizes vhost-user-blk; an earlier intruder is refused', async (t) => {
  const { dir, children, start } = peerFixture(t);
  const ds = await start(disk(dir, { awaitPeer: true }));
  const events: DiskEvent[] = [];
  ds.on('event', (e) => events.push(e));
  const intruder = frontendProcess(ds.spec.socketPath);
  children.push(intruder.child);
  await sleep(200);
  const qemu = spawn('qemu-system-x86_64', [
    '-S', '-machine', 'pc,accel=tcg', '-m', '128', '-nodefaults', '-display', 'none',
    '-object', 'memory-backend-memfd,id=mem,size=128M,share=on', '-numa', 'node,memdev=mem',
    '-chardev', `socket,id=d0,path=${ds.spec.socketPath},reconnect=1`, '-device', 'vhost-user-blk-pci,chardev=d0',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(qemu);
  let stderr = '';
  qemu.stderr!.on('data', (d) => (stderr += d));
  // QEMU is now blocked realizing the device: its connection waits, unserved, in the backlog.
  await sleep(700);
  assert.equal(qemu.exitCode, null, `QEMU exited early: ${stderr}`);
  assert.equal(events.filter((e) => e.kind === 'connected').length, 0);

  await ds.expectPeer(qemu.pid!);
  await waitFor(() => events.some((e) => e.kind === 'connected'), { timeoutMs: 60_000, what: 'QEMU to connect' });
  assert.deepEqual(events.filter((e) => e.kind === 'connected').map((e) => (e as { pid: number | null }).pid), [qemu.pid]);
  await sleep(700); // QEMU would exit if the device failed to realize
  assert.equal(qemu.exitCode, null, `QEMU exited: ${stderr}`);
  assert.ok(await logged(events, `refused a frontend connection from pid ${intruder.child.pid}`));
  assert.notEqual((await intruder.done).code, 0);
});
