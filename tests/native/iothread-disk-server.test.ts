// DiskServer: one worker_thread per disk serving a real file over vhost-user, driven by
// `spindle loadgen` (runLoadgen, a real vhost-user frontend with memfd memory and eventfds).
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskServer, type DiskEvent, type DiskSpec } from '../../electron/host/disks/disk-server.js';
import { runLoadgen, type LoadgenOptions } from '../../electron/tools/loadgen.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { VhostUserFrontend } from '../../electron/tools/vhost-user-frontend.js';
import { F_PROTOCOL_FEATURES, ProtocolFeature, protocolBit } from '../../electron/dataplane/vhost-user/protocol.js';
import { DriverRing } from '../../electron/tools/driver-ring.js';
import { VIRTIO_F_VERSION_1 } from '../../electron/dataplane/virtio/virtio-blk.js';
import { makeFile } from '../lib/loop.js';
import { crashIoThread, useTestIoThread } from '../lib/io-thread-hooks.js';
import { waitFor } from '../lib/wait.js';

useTestIoThread();  // crashIoThread below

const load = (socket: string, o: Partial<LoadgenOptions> = {}): LoadgenOptions => ({
  socket, rw: 'randwrite', bs: 4096, iodepth: 16, queues: 1, runtimeSec: 0.3, size: 0,
  verify: false, verifyOnly: false, rwmixread: 50, seed: 11, ...o,
});

function disk(dir: string, name: string, o: Partial<DiskSpec> = {}): DiskSpec {
  return {
    path: makeFile(join(dir, `${name}.img`), 16 << 20, { written: true }),
    socketPath: join(dir, 'sockets', `${name}.sock`),
    aio: 'threads', cache: 'writeback', nowait: 'off', readOnly: false, queues: 2, serial: name, ...o,
  };
}

test('a disk served from its own thread: verified I/O, shared counters, pause/resume, live aio/cache switch, stop', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-iot-'));
  let ds: DiskServer | null = null;
  try {
    ds = await DiskServer.start(disk(dir, 'd0'));
    const events: DiskEvent[] = [];
    ds.on('event', (e) => events.push(e));
    assert.equal(ds.sizeBytes, 16 << 20);
    assert.equal(ds.kind, 'file');

    const w = await runLoadgen(load(ds.spec.socketPath, { queues: 2, verify: true, size: 4 << 20 }));
    assert.equal(w.errors, 0);
    assert.equal(w.verify?.mismatches, 0);
    const s1 = ds.stats();
    assert.equal(s1.write.ops, 1024, 'the worker\'s engine counted every write, read here from shared memory');
    assert.equal(s1.write.bytes, 4 << 20);
    assert.ok(s1.read.ops >= 1024);

    await ds.pause();
    assert.equal(ds.stats().inFlight, 0, 'paused: nothing in flight');
    await ds.resume();

    // Live switch while a frontend is connected and between runs of load; the guest sees no error.
    const running = runLoadgen(load(ds.spec.socketPath, { rw: 'randrw', runtimeSec: 0.8 }));
    await new Promise((r) => setTimeout(r, 200));
    await ds.reconfigure({ aio: 'io_uring', cache: 'none' });
    assert.deepEqual(ds.currentModes, { aio: 'io_uring', cache: 'none', nowait: 'off' });
    const r = await running;
    assert.equal(r.errors, 0);
    assert.ok(events.some((e) => e.kind === 'modes' && e.aio === 'io_uring'));
    // Written and read back through the new engine (O_DIRECT now): every block intact.
    const v = await runLoadgen(load(ds.spec.socketPath, { verify: true, size: 4 << 20, queues: 2, seed: 12 }));
    assert.equal(v.verify?.mismatches, 0);
    assert.equal(v.errors, 0);

    await assert.rejects(ds.reconfigure({ aio: 'native', cache: 'writeback' }), (e: unknown) => e instanceof SpindleError && e.code === 'UNSUPPORTED_MODE');
    assert.ok(events.some((e) => e.kind === 'log' && e.line.includes('frontend connected')));
    await ds.stop();
    ds = null;
  } finally {
    await ds?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a failure in one disk\'s worker is an event; the other disk and the main thread go on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-iot-'));
  const a = await DiskServer.start(disk(dir, 'a', { queues: 1 }), { enabled: false });
  const b = await DiskServer.start(disk(dir, 'b', { queues: 1 }));
  try {
    const failed = once(a, 'event').then(() => a.failed);
    const events: DiskEvent[] = [];
    a.on('event', (e) => events.push(e));
    await crashIoThread(a);
    await until(() => a.failed !== null, 'disk a to be marked failed');
    assert.match(a.failed!, /the disk's I\/O thread failed: crash requested by a test/);
    assert.ok(events.some((e) => e.kind === 'failed'));
    void failed;
    await assert.rejects(a.pause(), /This disk has stopped/);
    const r = await runLoadgen(load(b.spec.socketPath, { rw: 'randread' }));
    assert.equal(r.errors, 0);
    assert.ok(r.reads > 0);
  } finally {
    await a.stop();
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a crashed worker is restarted on the same socket with the same counters and its live-switched modes; its data is intact and the other disk goes on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-iot-'));
  const a = await DiskServer.start(disk(dir, 'a', { queues: 1 }));
  const b = await DiskServer.start(disk(dir, 'b', { queues: 1 }));
  try {
    const events: DiskEvent[] = [];
    a.on('event', (e) => events.push(e));
    const w = await runLoadgen(load(a.spec.socketPath, { verify: true, size: 2 << 20 }));
    assert.equal(w.errors, 0);
    const writesBefore = a.stats().write.ops;
    // A frontend connected when the worker dies sees the connection close (that is what makes
    // QEMU reconnect): the supervisor closes the fd the dead thread left open.
    const fe = VhostUserFrontend.connect(a.spec.socketPath);
    await fe.getConfig(0, 8);
    // A live switch made before the crashes is what the restarted thread serves with.
    await a.reconfigure({ aio: 'io_uring', cache: 'none' });
    for (let round = 1; round <= 3; round++) {
      await crashIoThread(a);
      if (round === 1) {
        await until(() => fe.isClosed, 'the dead worker\'s frontend connection to close');
        fe.close();
      }
      await until(() => events.filter((e) => e.kind === 'restarted').length === round, `restart ${round}`);
      assert.equal(a.failed, null, 'a restarted disk is not failed');
      assert.equal(a.recovery.restarts, round);
      assert.deepEqual(a.currentModes, { aio: 'io_uring', cache: 'none', nowait: 'off' }, 'the live switch survives the restart');
      // A new connection on the same socket reads back what was written before the crashes.
      const r = await runLoadgen(load(a.spec.socketPath, { verifyOnly: true, size: 2 << 20 }));
      assert.equal(r.errors, 0);
      assert.equal(r.verify?.mismatches, 0, `data changed across restart ${round}`);
    }
    const restarting = events.filter((e) => e.kind === 'restarting');
    assert.equal(restarting.length, 3);
    assert.match(restarting[0]!.kind === 'restarting' ? restarting[0]!.reason : '', /crash requested by a test/);
    assert.ok(a.stats().write.ops >= writesBefore, 'the counters carry over the restarts');
    await a.pause();
    await a.resume();
    const r = await runLoadgen(load(b.spec.socketPath, { rw: 'randread' }));
    assert.equal(r.errors, 0);
    assert.deepEqual(a.statsSummary()['restarts'], 3);
  } finally {
    await a.stop();
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a worker that keeps crashing is given up after the policy\'s restarts: failed, with the reason', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-iot-'));
  const a = await DiskServer.start(disk(dir, 'a', { queues: 1 }), { maxRestarts: 2, windowMs: 60_000 });
  try {
    for (let i = 0; i < 3; i++) {
      await until(() => !a.failed && a.recovery.restarts === i, `restart ${i} to complete`);
      await crashIoThread(a);
      await until(() => a.recovery.restarts === i + 1 || a.failed !== null, `crash ${i + 1} to restart or fail the disk`);
    }
    assert.match(a.failed ?? '', /restarted 2 times within 60 s, so it stays stopped/);
    await assert.rejects(a.pause(), /This disk has stopped/);
  } finally {
    await a.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('start refuses a missing file and an impossible mode with the backend\'s sentence', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-iot-'));
  try {
    await assert.rejects(DiskServer.start({ ...disk(dir, 'x'), path: join(dir, 'missing.img') }), (e: unknown) => e instanceof SpindleError && e.code === 'NOT_FOUND');
    await assert.rejects(DiskServer.start(disk(dir, 'y', { aio: 'native', cache: 'writeback' })), (e: unknown) => e instanceof SpindleError && e.code === 'UNSUPPORTED_MODE' && /needs cache 'none' or 'directsync'/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Waits for `cond` (60 s: restarts on a loaded machine take a while), failing with `what`. */
const until = (cond: () => boolean, what: string): Promise<true> => waitFor(cond, { timeoutMs: 60_000, what });

test('a crashed worker leaves no fd behind: disk, guest memory, eventfds and sockets are closed by the supervisor', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-iot-'));
  const a = await DiskServer.start(disk(dir, 'a', { queues: 1 }));
  const openFds = (): number => readdirSync('/proc/self/fd').length;
  try {
    const events: DiskEvent[] = [];
    a.on('event', (e) => events.push(e));
    const baseline = openFds();
    for (let round = 1; round <= 2; round++) {
      // A frontend as QEMU sets it up: the worker then holds the connection, the guest memory fd
      // and a kick and a call eventfd, beside its disk fd and listening socket.
      const fe = VhostUserFrontend.connect(a.spec.socketPath);
      const mem = VhostUserFrontend.allocateMemory(1 << 20);
      const got = await fe.negotiate({ features: 1n << BigInt(VIRTIO_F_VERSION_1), protocolFeatures: protocolBit(ProtocolFeature.REPLY_ACK) });
      await fe.setMemTable([mem]);
      const ring = new DriverRing(mem.memory, mem.guestAddr, mem.guestAddr + 4096, 64, { eventIdx: false });
      await fe.setupVring(0, { size: 64, descAddr: ring.descAddr, availAddr: ring.availAddr, usedAddr: ring.usedAddr }, () => undefined);
      if (got.features & F_PROTOCOL_FEATURES) await fe.enableVring(0, true);
      await fe.getConfig(0, 8);
      await crashIoThread(a);
      await until(() => events.filter((e) => e.kind === 'restarted').length === round, `restart ${round}`);
      await until(() => fe.isClosed, 'the dead worker\'s frontend connection to close');
      fe.close();
      VhostUserFrontend.freeMemory(mem);
      await waitFor(() => openFds() === baseline, {
        timeoutMs: 60_000,
        what: `round ${round}: as many fds open as before the frontend came and the worker crashed (${baseline})`,
        detail: () => `${openFds()} open`,
      });
    }
    const r = await runLoadgen(load(a.spec.socketPath, { verify: true, size: 1 << 20 }));
    assert.equal(r.verify?.mismatches, 0, 'the restarted worker serves');
  } finally {
    await a.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
