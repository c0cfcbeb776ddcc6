// VhostUserServer with a real QEMU (TCG, paused with -S): QEMU connects while realizing
// vhost-user-blk-pci and performs the handshake and GET_CONFIG even with no guest running.
// The first test uses a recording double (tests/native/vhost-user-double.ts) to see exactly what
// QEMU asks; the second the real VirtioBlkDevice over a BlockBackend on a file. The guest suite
// covers real I/O from a booted Linux.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VhostUserServer } from '../../electron/dataplane/vhost-user/server.js';
import { RecordingDevice } from './vhost-user-double.js';
import { VirtioBlkDevice } from '../../electron/dataplane/virtio/virtio-blk.js';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { makeFile } from '../lib/loop.js';

function startQemu(dir: string, sock: string, extraDevice = '') {
  const qemu = spawn('qemu-system-x86_64', [
    '-S', '-machine', 'q35,accel=tcg', '-m', '256',
    '-object', 'memory-backend-memfd,id=mem,size=256M,share=on', '-numa', 'node,memdev=mem',
    '-chardev', `socket,id=d0,path=${sock},reconnect=1`, '-device', `vhost-user-blk-pci,chardev=d0${extraDevice}`,
    '-qmp', `unix:${join(dir, 'qmp.sock')},server=on,wait=off`, '-display', 'none', '-nodefaults',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qemu.stderr.on('data', (d) => (stderr += d));
  return { qemu, stderr: () => stderr };
}

const until = async (cond: () => boolean, what: string, ms = 30_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  assert.ok(cond(), `timed out waiting for ${what}`);
};

test('QEMU performs the vhost-user-blk handshake and GET_CONFIG, and reconnects to a restarted server', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-qemu-'));
  const sock = join(dir, 'd0.sock');
  const device = new RecordingDevice(1, 8192n);
  let server = VhostUserServer.listen({ socketPath: sock, device });
  const logs: string[] = [];
  server.on('log', (l) => logs.push(l));
  const requests: string[] = [];
  server.on('request', (name) => requests.push(name));
  const { qemu, stderr: qemuStderr } = startQemu(dir, sock);
  try {
    await until(() => device.calls.some((c) => c.startsWith('readConfig')) || qemu.exitCode !== null, 'QEMU to read the config space');
    assert.equal(qemu.exitCode, null, `QEMU exited: ${qemuStderr()}`);
    assert.ok(server.connected);
    for (const r of ['GET_FEATURES', 'GET_PROTOCOL_FEATURES', 'SET_PROTOCOL_FEATURES', 'GET_QUEUE_NUM', 'SET_OWNER', 'GET_CONFIG']) {
      assert.ok(requests.includes(r), `QEMU sent ${r} (saw: ${requests.join(' ')})`);
    }
    assert.ok(!logs.some((l) => l.includes('closing the connection')), logs.join('\n'));
    assert.ok(logs.some((l) => l.includes('frontend connected')));

    // The backend dies and comes back (a new server on the same path): QEMU reconnects on its own.
    await server.close();
    assert.equal(device.resets, 1, 'the device was reset when the connection ended');
    const device2 = new RecordingDevice(1, 8192n);
    server = VhostUserServer.listen({ socketPath: sock, device: device2 });
    // QEMU 7.2 reconnects (reconnect=1) but, with the device not started (-S, no driver), sends
    // nothing until the guest starts it; the handshake after reconnect is covered by the guest suite.
    await until(() => server.connected || qemu.exitCode !== null, 'QEMU to reconnect');
    assert.equal(qemu.exitCode, null, `QEMU exited: ${qemuStderr()}`);

    // QEMU going away is a disconnect: the device is reset and the server waits for the next one.
    const gone = once(server, 'disconnected');
    qemu.kill('SIGKILL');
    await gone;
    assert.equal(device2.resets, 1);
    assert.equal(server.connected, false);
  } finally {
    if (qemu.exitCode === null) {
      qemu.kill('SIGKILL');
      await once(qemu, 'exit');
    }
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('QEMU realizes vhost-user-blk-pci against the real virtio-blk device over a file (2 queues)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-qemu-'));
  const sock = join(dir, 'd1.sock');
  const backend = await BlockBackend.open(makeFile(join(dir, 'disk.img'), 32 << 20, { written: true }), { aio: 'io_uring', cache: 'none' });
  const server = VhostUserServer.listen({ socketPath: sock, device: new VirtioBlkDevice(backend, { numQueues: 2, serial: 'qemu-real' }) });
  const requests: string[] = [];
  const logs: string[] = [];
  server.on('request', (r) => requests.push(r));
  server.on('log', (l) => logs.push(l));
  const { qemu, stderr } = startQemu(dir, sock, ',num-queues=2');
  try {
    await until(() => requests.includes('GET_CONFIG') || qemu.exitCode !== null, 'QEMU to read the config space');
    // Give QEMU a moment to object to the config (it closes the connection if it does).
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(qemu.exitCode, null, `QEMU exited: ${stderr()}`);
    assert.ok(server.connected, logs.join('\n'));
    assert.ok(!logs.some((l) => l.includes('closing the connection')), logs.join('\n'));
  } finally {
    if (qemu.exitCode === null) {
      qemu.kill('SIGKILL');
      await once(qemu, 'exit');
    }
    await server.close();
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
