// VhostUserServer against VhostUserFrontend over a real unix socket, with real memfd memory
// and eventfds. The device is a recording double (tests/native/vhost-user-double.ts).
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VhostUserServer } from '../../electron/dataplane/vhost-user/server.js';
import { VhostUserFrontend } from '../../electron/tools/vhost-user-frontend.js';
import { BACKEND_PROTOCOL_FEATURES, F_PROTOCOL_FEATURES } from '../../electron/dataplane/vhost-user/protocol.js';
import { posix } from '../../electron/dataplane/native/posix.js';
import { RecordingDevice } from './vhost-user-double.js';
import { waitFor } from '../lib/wait.js';

const ALL = (1n << 64n) - 1n;

function setup(numQueues = 2) {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-vhu-'));
  const socketPath = join(dir, 'disks', 'd0.sock');
  const device = new RecordingDevice(numQueues);
  const server = VhostUserServer.listen({ socketPath, device });
  const logs: string[] = [];
  server.on('log', (l) => logs.push(l));
  return {
    dir, socketPath, device, server, logs,
    async cleanup() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const until = async (cond: () => boolean, what: string): Promise<void> => {
  await waitFor(cond, { timeoutMs: 30_000, intervalMs: 5, what });
};

test('socket in a 0700 directory, mode 0600; negotiation, queue count and config space', async () => {
  const t = setup();
  const fe = VhostUserFrontend.connect(t.socketPath);
  try {
    assert.equal(statSync(join(t.dir, 'disks')).mode & 0o777, 0o700);
    assert.equal(statSync(t.socketPath).mode & 0o777, 0o600);
    const got = await fe.negotiate({ features: ALL, protocolFeatures: ALL });
    assert.equal(got.features, t.device.deviceFeatures | F_PROTOCOL_FEATURES);
    assert.equal(got.protocolFeatures, BACKEND_PROTOCOL_FEATURES);
    assert.equal(t.device.features, t.device.deviceFeatures, 'PROTOCOL_FEATURES is not passed to the device');
    assert.equal(await fe.getQueueNum(), 2);
    const cap = await fe.getConfig(0, 8);
    assert.equal(new DataView(cap.buffer).getBigUint64(0, true), 2048n);
    await fe.setConfig(32, Uint8Array.of(1));
    assert.equal(t.device.config[32], 1);
    // A refused config write is acknowledged as a failure (REPLY_ACK); the connection goes on.
    await assert.rejects(fe.setConfig(0, new Uint8Array(8)), /refused SET_CONFIG/);
    await assert.rejects(fe.getConfig(56, 8), /refused to read 8 config bytes/);
    assert.equal((await fe.getConfig(20, 4))[1], 2, 'blk_size 512 still readable');
    assert.ok(t.logs.some((l) => l.includes('SET_CONFIG refused: only the writeback byte')));
  } finally {
    fe.close();
    await t.cleanup();
  }
});

test('memory table, vrings, kick and call, GET_VRING_BASE, inflight area, then disconnect resets', async () => {
  const t = setup();
  const fe = VhostUserFrontend.connect(t.socketPath);
  const low = VhostUserFrontend.allocateMemory(1 << 20, 0);
  const high = VhostUserFrontend.allocateMemory(1 << 20, 0x1000_0000);
  try {
    await fe.negotiate({ features: ALL, protocolFeatures: ALL });
    await fe.setMemTable([low, high]);
    assert.deepEqual(t.device.memory.map((r) => [r.guestAddr, r.size, r.frontendAddr]), [
      [0, 1 << 20, low.frontendAddr], [0x1000_0000, 1 << 20, high.frontendAddr],
    ]);
    // Zero copy: both sides map the same pages.
    high.memory[4096] = 0x77;
    assert.equal(t.device.memory[1]!.memory[4096], 0x77);
    t.device.memory[0]!.memory[10] = 0x33;
    assert.equal(low.memory[10], 0x33);

    let calls = 0;
    const ring = await fe.setupVring(1, { size: 256, descAddr: 0x1000_0000, availAddr: 0x1000_1000, usedAddr: 0x1000_2000, base: 5 }, () => calls++);
    assert.equal(t.device.started.size, 0, 'with protocol features a ring starts disabled');
    await fe.enableVring(1, true);
    const s = t.device.started.get(1)!;
    assert.deepEqual([s.size, s.descAddr, s.availAddr, s.usedAddr, s.lastAvailIdx], [256, 0x1000_0000, 0x1000_1000, 0x1000_2000, 5]);

    const kicksBefore = t.device.kicks.length;
    ring.kick();
    await until(() => t.device.kicks.length > kicksBefore, 'the kick to reach the device');
    assert.equal(t.device.kicks.at(-1), 1);
    s.notify();
    await until(() => calls === 1, 'the call eventfd');

    t.device.nextAvail.set(1, 42);
    assert.equal(await fe.getVringBase(1), 42);
    assert.ok(t.device.calls.includes('stopQueue(1)'));

    const inflight = await fe.getInflight(2, 256);
    assert.ok(inflight);
    assert.equal(inflight.desc.mmapSize, 2 * Math.ceil((16 + 16 * 256) / 64) * 64);
    const area = posix.mapShared(inflight.fd, 0, inflight.desc.mmapSize);
    const areaView = new DataView(area.buffer, area.byteOffset, area.byteLength);
    assert.equal(areaView.getUint16(8, true), 1, 'queue 0 region: version 1');
    assert.equal(areaView.getUint16(10, true), 256, 'queue 0 region: desc_num');
    await fe.setInflight(inflight.fd, inflight.desc);
    assert.equal(t.server.inflight?.desc.queueSize, 256);
    posix.unmap(area);
    posix.closeFd(inflight.fd);

    const deviceView = t.device.memory[0]!.memory;
    const gone = once(t.server, 'disconnected');
    fe.close();
    await gone;
    assert.equal(t.device.resets, 1);
    assert.equal(deviceView.byteLength, 0, 'the backend unmapped guest memory');
    assert.equal(t.server.inflight, null);
    assert.ok(t.logs.some((l) => l.endsWith('frontend disconnected')));

    // The next frontend (QEMU reconnecting) is served from scratch.
    const again = VhostUserFrontend.connect(t.socketPath);
    await again.negotiate({ features: ALL, protocolFeatures: ALL });
    assert.equal(await again.getQueueNum(), 2);
    again.close();
  } finally {
    fe.close();
    VhostUserFrontend.freeMemory(low);
    VhostUserFrontend.freeMemory(high);
    await t.cleanup();
  }
});

test('without PROTOCOL_FEATURES rings start enabled', async () => {
  const t = setup(1);
  const fe = VhostUserFrontend.connect(t.socketPath);
  const mem = VhostUserFrontend.allocateMemory(1 << 16);
  try {
    await fe.setFeatures(t.device.deviceFeatures);
    await fe.setMemTable([mem]);
    await fe.setupVring(0, { size: 16, descAddr: 0, availAddr: 0x1000, usedAddr: 0x2000 }, () => {});
    await until(() => t.device.started.has(0), 'the ring to start');
  } finally {
    fe.close();
    VhostUserFrontend.freeMemory(mem);
    await t.cleanup();
  }
});

test('a second frontend is refused with a log line while the first keeps working', async () => {
  const t = setup();
  const first = VhostUserFrontend.connect(t.socketPath);
  try {
    await first.negotiate({ features: ALL, protocolFeatures: ALL });
    const second = VhostUserFrontend.connect(t.socketPath);
    await assert.rejects(second.getFeatures(), /connection closed/);
    assert.ok(t.logs.some((l) => l.includes(`refused a second frontend connection from pid ${process.pid}`)));
    assert.equal(await first.getQueueNum(), 2);
  } finally {
    first.close();
    await t.cleanup();
  }
});

test('a peer refused by acceptPeer is closed and logged', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-vhu-'));
  const server = VhostUserServer.listen({ socketPath: join(dir, 's.sock'), device: new RecordingDevice(), acceptPeer: (p) => p.pid === -1 });
  const logs: string[] = [];
  server.on('log', (l) => logs.push(l));
  try {
    const fe = VhostUserFrontend.connect(join(dir, 's.sock'));
    await assert.rejects(fe.getFeatures(), /connection closed/);
    assert.ok(logs.some((l) => l.includes('not the process this disk belongs to')));
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('listen refuses a live socket and a non-socket, and replaces a stale one', async () => {
  const t = setup();
  try {
    assert.throws(() => VhostUserServer.listen({ socketPath: t.socketPath, device: new RecordingDevice() }), /already serving/);
    assert.throws(() => VhostUserServer.listen({ socketPath: t.dir, device: new RecordingDevice() }), /is not a socket/);
    assert.throws(() => VhostUserServer.listen({ socketPath: join(t.dir, 'x'.repeat(120)), device: new RecordingDevice() }), /too long/);
    // Stale: a socket file nobody listens on (left behind by a crash).
    const stale = join(t.dir, 'stale.sock');
    posix.closeFd(posix.listenUnix(stale));
    const s2 = VhostUserServer.listen({ socketPath: stale, device: new RecordingDevice() });
    await s2.close();
  } finally {
    await t.cleanup();
  }
});
