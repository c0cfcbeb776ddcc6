// Connections that do not behave like a frontend, and what a reconnecting frontend is owed
// against a real disk served from its IOThread (DiskServer):
//  - a client that connects and idles (or talks without ever sending SET_OWNER) cannot keep the
//    real frontend out: it is closed after HANDSHAKE_DEADLINE_MS, and the frontend that connected
//    meanwhile waits in the backlog and is served;
//  - a request that completes after its frontend dropped the connection is announced with an
//    interrupt on the next connection's call fd (with EVENT_IDX the guest would otherwise never be
//    interrupted for it, and its I/O would hang after the reconnect).
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DiskServer, type DiskEvent, type DiskSpec } from '../../electron/host/disks/disk-server.js';
import { runLoadgen } from '../../electron/tools/loadgen.js';
import { HANDSHAKE_DEADLINE_MS } from '../../electron/dataplane/vhost-user/server.js';
import { VhostUserFrontend } from '../../electron/tools/vhost-user-frontend.js';
import { ProtocolFeature, protocolBit } from '../../electron/dataplane/vhost-user/protocol.js';
import { DriverRing } from '../../electron/tools/driver-ring.js';
import { VIRTIO_BLK_T_IN, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX } from '../../electron/dataplane/virtio/virtio-blk.js';
import { posix, closeQuietly } from '../../electron/dataplane/native/posix.js';
import { makeFile, tempDir } from '../lib/loop.js';
import { useTestIoThread } from '../lib/io-thread-hooks.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

async function withDisk(fn: (ds: DiskServer, events: DiskEvent[]) => Promise<void>, spec: Partial<DiskSpec> = {}): Promise<void> {
  const dir = tempDir('spindle-handshake-');
  let ds: DiskServer | null = null;
  try {
    ds = await DiskServer.start({
      path: makeFile(join(dir.path, 'd.img'), 16 << 20), socketPath: join(dir.path, 'd.sock'),
      aio: 'threads', cache: 'writeback', nowait: 'off', readOnly: false, queues: 1, serial: 'h', ...spec,
    });
    const events: DiskEvent[] = [];
    ds.on('event', (e) => events.push(e));
    await fn(ds, events);
  } finally {
    await ds?.stop();
    dir.cleanup();
  }
}

const logged = (events: DiskEvent[], what: RegExp): boolean => events.some((e) => e.kind === 'log' && what.test(e.line));

/** A real frontend connecting behind `blocker`: resolves once it is served, with how long that took. */
async function servedBehind(socket: string): Promise<number> {
  const t0 = Date.now();
  const fe = VhostUserFrontend.connect(socket);
  try {
    // Its first request is answered only once the server accepted it.
    await fe.negotiate({ features: 1n << BigInt(VIRTIO_F_VERSION_1), protocolFeatures: protocolBit(ProtocolFeature.REPLY_ACK) });
    assert.equal(await fe.getQueueNum(), 1);
    return Date.now() - t0;
  } finally {
    fe.close();
  }
}

test('a client that connects and sends nothing is closed after the handshake deadline; the frontend behind it is served', async () => {
  await withDisk(async (ds, events) => {
    const idle = posix.connectUnix(ds.spec.socketPath);
    try {
      await until('the idle client to be accepted', () => events.some((e) => e.kind === 'connected'));
      const waited = await servedBehind(ds.spec.socketPath);
      assert.ok(waited < HANDSHAKE_DEADLINE_MS + 5_000, `served after ${waited} ms`);
      assert.ok(logged(events, /closing the connection: the frontend connected and sent nothing for 5 s\. If it is QEMU older than 9\.1/),
        `the idle client's close is logged with the reason: ${JSON.stringify(events)}`);
      // And the disk serves real I/O to the next frontend.
      const r = await runLoadgen({ socket: ds.spec.socketPath, rw: 'randwrite', bs: 4096, iodepth: 8, queues: 1, runtimeSec: 0.2, size: 1 << 20, verify: true, verifyOnly: false, rwmixread: 50, seed: 9 });
      assert.equal(r.verify?.mismatches, 0);
      assert.equal(r.errors, 0);
    } finally {
      closeQuietly(idle);
    }
  });
});

test('a client that talks but never sends SET_OWNER is closed too; an owning frontend is never timed out', async () => {
  await withDisk(async (ds, events) => {
    const chatty = VhostUserFrontend.connect(ds.spec.socketPath);
    try {
      assert.equal(await chatty.getQueueNum(), 1);
      const waited = await servedBehind(ds.spec.socketPath);
      assert.ok(waited < HANDSHAKE_DEADLINE_MS + 5_000, `served after ${waited} ms`);
      assert.ok(logged(events, /closing the connection: it sent no SET_OWNER within 5 s/), JSON.stringify(events));
      assert.ok(chatty.isClosed);
    } finally {
      chatty.close();
    }
    // A frontend that owns the disk keeps it past the deadline; a newcomer is refused meanwhile.
    const owner = VhostUserFrontend.connect(ds.spec.socketPath);
    try {
      await owner.negotiate({ features: 1n << BigInt(VIRTIO_F_VERSION_1), protocolFeatures: 0n });
      await sleep(HANDSHAKE_DEADLINE_MS + 500);
      const second = VhostUserFrontend.connect(ds.spec.socketPath);
      await assert.rejects(second.getQueueNum(), /connection closed/);
      second.close();
      assert.equal(await owner.getQueueNum(), 1, 'the owning frontend is still served');
    } finally {
      owner.close();
    }
  });
});

test('a request completed after its frontend dropped the connection is announced on the next connection\'s call fd', async () => {
  // Completions reach the device 300 ms late (test hook), so the request is still in flight when
  // the frontend goes and completes while nobody listens to the old call fd.
  useTestIoThread();
  process.env.SPINDLE_TEST_COMPLETION_DELAY_MS = '300';
  const started = withDisk(async (ds) => {
    delete process.env.SPINDLE_TEST_COMPLETION_DELAY_MS;
    const features = (1n << BigInt(VIRTIO_F_VERSION_1)) | (1n << BigInt(VIRTIO_RING_F_EVENT_IDX));
    const protocolFeatures = protocolBit(ProtocolFeature.REPLY_ACK) | protocolBit(ProtocolFeature.INFLIGHT_SHMFD);
    const mem = VhostUserFrontend.allocateMemory(1 << 20);
    const ring = new DriverRing(mem.memory, 0, 0, 64, { eventIdx: true });
    const addrs = { size: 64, descAddr: ring.descAddr, availAddr: ring.availAddr, usedAddr: ring.usedAddr };
    let inflight: { fd: number; desc: Parameters<VhostUserFrontend['setInflight']>[1] } | null = null;
    try {
      // First connection, as QEMU makes it: inflight area, memory, ring; one read in flight.
      const fe1 = VhostUserFrontend.connect(ds.spec.socketPath);
      await fe1.negotiate({ features, protocolFeatures });
      inflight = await fe1.getInflight(1, 64);
      assert.ok(inflight);
      await fe1.setInflight(inflight.fd, inflight.desc);
      await fe1.setMemTable([mem]);
      const hdr = new DataView(mem.memory.buffer, mem.memory.byteOffset + 0x10000, 16);
      hdr.setUint32(0, VIRTIO_BLK_T_IN, true);
      hdr.setBigUint64(8, 8n, true);
      const head = ring.addRequest(0x10000, 0x11000, 4096, true, 0x12000);
      mem.memory[0x12000] = 0xff;
      ring.setInterrupts(true);
      const r1 = await fe1.setupVring(0, addrs, () => {});
      await fe1.enableVring(0, true);
      if (ring.publish()) r1.kick();
      // The device took the chain (it asks for a kick at the next one) and holds its completion.
      await until('the server to take the request', () => ring.availEvent() === 1, 5_000);
      assert.equal(ring.usedIdx(), 0, 'still in flight');
      // The frontend goes (as QEMU does when the backend is restarted under it) before the completion.
      fe1.close();
      await until('the request to complete after the frontend left', () => ring.usedIdx() === 1);

      // The next connection: same memory, same inflight area, a new call fd.
      let calls = 0;
      const fe2 = VhostUserFrontend.connect(ds.spec.socketPath);
      try {
        await fe2.negotiate({ features, protocolFeatures });
        await fe2.setInflight(inflight.fd, inflight.desc);
        await fe2.setMemTable([mem]);
        await fe2.setupVring(0, { ...addrs, base: ring.usedIdx() }, () => calls++);
        await fe2.enableVring(0, true);
        await until('an interrupt on the new call fd for the completion published while nobody listened', () => calls > 0, 5_000);
        const got: number[] = [];
        ring.collect((h) => got.push(h));
        assert.deepEqual(got, [head]);
        assert.equal(mem.memory[0x12000], 0, 'the request completed with VIRTIO_BLK_S_OK');
      } finally {
        fe2.close();
      }
    } finally {
      if (inflight) closeQuietly(inflight.fd);
      VhostUserFrontend.freeMemory(mem);
    }
  });
  await started;
});
