// VhostUserFrontend against a real backend: Debian's qemu-storage-daemon exporting a file as
// vhost-user-blk. Negotiation, config space, shared memory, one vring, and one real read
// request through a hand-built split ring (three descriptors) to prove kick and call work.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VhostUserFrontend } from '../../electron/tools/vhost-user-frontend.js';
import { F_PROTOCOL_FEATURES, ProtocolFeature, protocolBit } from '../../electron/dataplane/vhost-user/protocol.js';

const until = async (cond: () => boolean, what: string, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  assert.ok(cond(), `timed out waiting for ${what}`);
};

// Device and ring features a simple driver takes: blk bits, INDIRECT_DESC, EVENT_IDX, VERSION_1.
const DRIVER_FEATURES = ((1n << 30n) - 1n) | (1n << 32n);

test('frontend negotiates with qemu-storage-daemon, reads its config and does one read request', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-qsd-'));
  const img = join(dir, 'disk.img');
  const sock = join(dir, 'qsd.sock');
  const size = 4 << 20;
  const pattern = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) pattern.writeUInt32LE(i, i);
  writeFileSync(img, pattern);
  const qsd = spawn('qemu-storage-daemon', [
    '--blockdev', `driver=file,node-name=f0,filename=${img}`,
    '--export', `type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=${sock},writable=on`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qsd.stderr.on('data', (d) => (stderr += d));
  const mem = VhostUserFrontend.allocateMemory(1 << 20);
  let fe: VhostUserFrontend | null = null;
  try {
    await until(() => existsSync(sock) || qsd.exitCode !== null, 'qemu-storage-daemon to listen');
    assert.equal(qsd.exitCode, null, stderr);
    fe = VhostUserFrontend.connect(sock);
    const got = await fe.negotiate({ features: DRIVER_FEATURES, protocolFeatures: protocolBit(ProtocolFeature.MQ) | protocolBit(ProtocolFeature.REPLY_ACK) | protocolBit(ProtocolFeature.CONFIG) });
    assert.ok(got.features & F_PROTOCOL_FEATURES);
    assert.ok(got.features & (1n << 32n), 'VERSION_1');
    assert.ok(got.protocolFeatures & protocolBit(ProtocolFeature.CONFIG));
    assert.ok((await fe.getQueueNum()) >= 1);
    const cfg = await fe.getConfig(0, 60);
    assert.equal(new DataView(cfg.buffer).getBigUint64(0, true), BigInt(size / 512), 'capacity in sectors equals the image size');

    await fe.setMemTable([mem]);
    const m = new DataView(mem.memory.buffer, mem.memory.byteOffset, mem.memory.byteLength);
    const bytes = mem.memory;
    const DESC = 0x0, AVAIL = 0x1000, USED = 0x2000, HDR = 0x3000, DATA = 0x4000, STATUS = 0x5000;
    const desc = (i: number, addr: number, len: number, flags: number, next: number) => {
      m.setBigUint64(DESC + 16 * i, BigInt(addr), true);
      m.setUint32(DESC + 16 * i + 8, len, true);
      m.setUint16(DESC + 16 * i + 12, flags, true);
      m.setUint16(DESC + 16 * i + 14, next, true);
    };
    let calls = 0;
    const ring = await fe.setupVring(0, { size: 16, descAddr: DESC, availAddr: AVAIL, usedAddr: USED }, () => calls++);
    await fe.enableVring(0, true);

    // virtio-blk IN (read) of 4096 bytes at sector 8: header, data (device writes), status.
    m.setUint32(HDR, 0, true);
    m.setBigUint64(HDR + 8, 8n, true);
    bytes[STATUS] = 0xff;
    desc(0, HDR, 16, 1, 1);
    desc(1, DATA, 4096, 1 | 2, 2);
    desc(2, STATUS, 1, 2, 0);
    m.setUint16(AVAIL + 4, 0, true);
    m.setUint16(AVAIL + 2, 1, true);
    ring.kick();
    await until(() => calls > 0 && m.getUint16(USED + 2, true) === 1, 'the used ring to advance and the call eventfd to fire');
    assert.equal(bytes[STATUS], 0, 'status OK');
    assert.deepEqual(Buffer.from(mem.memory.buffer, mem.memory.byteOffset + DATA, 4096), pattern.subarray(8 * 512, 8 * 512 + 4096));

    assert.equal(await fe.getVringBase(0), 1, 'one avail entry consumed');
  } finally {
    fe?.close();
    VhostUserFrontend.freeMemory(mem);
    qsd.kill('SIGTERM');
    if (qsd.exitCode === null) await new Promise((r) => qsd.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
});
