// Live resize on a disk's IOThread, with Spindle's own vhost-user frontend playing QEMU: the file
// grows, GET_CONFIG reports the new capacity, and a frontend that gave a backend request channel
// (SET_BACKEND_REQ_FD, protocol features BACKEND_REQ + CONFIG) receives BACKEND_CONFIG_CHANGE_MSG
// on it; one that did not is named in the 'resized' event. Shrinking, odd sizes and a read-only
// disk are refused with sentences and change nothing.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskServer, type DiskEvent, type DiskSpec } from '../../electron/host/disks/disk-server.js';
import { VhostUserFrontend } from '../../electron/tools/vhost-user-frontend.js';
import { BackendRequest, HEADER_SIZE, ProtocolFeature, Request, VERSION, protocolBit } from '../../electron/dataplane/vhost-user/protocol.js';
import { VIRTIO_F_VERSION_1 } from '../../electron/dataplane/virtio/virtio-blk.js';
import { posix, closeQuietly } from '../../electron/dataplane/native/posix.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { makeFile } from '../lib/loop.js';

const MiB = 1 << 20;
const FEATURES = 1n << BigInt(VIRTIO_F_VERSION_1);
const WITH_CHANNEL = protocolBit(ProtocolFeature.REPLY_ACK) | protocolBit(ProtocolFeature.CONFIG) | protocolBit(ProtocolFeature.BACKEND_REQ);

function spec(dir: string, name: string, o: Partial<DiskSpec> = {}): DiskSpec {
  return {
    path: makeFile(join(dir, `${name}.img`), 16 * MiB),
    socketPath: join(dir, `${name}.sock`),
    aio: 'threads',
    cache: 'writeback',
    nowait: 'off',
    readOnly: false,
    queues: 1,
    serial: name,
    format: 'raw',
    ...o,
  };
}

const capacitySectors = async (fe: VhostUserFrontend): Promise<number> =>
  Number(new DataView((await fe.getConfig(0, 8)).buffer).getBigUint64(0, true));

/** The next message on the backend request channel (nonblocking fd), within `timeoutMs`. */
async function readBackendMessage(fd: number, timeoutMs = 10_000): Promise<{ request: number; flags: number; size: number }> {
  const buf = new Uint8Array(HEADER_SIZE);
  let got = 0;
  const deadline = Date.now() + timeoutMs;
  while (got < HEADER_SIZE) {
    const r = posix.recvMsg(fd, buf, got, HEADER_SIZE - got);
    if (r) {
      assert.notEqual(r.bytes, 0, 'the backend closed its request channel');
      r.fds.forEach(closeQuietly);
      got += r.bytes;
    } else if (Date.now() > deadline) throw new Error(`no backend message within ${timeoutMs} ms`);
    else await new Promise((res) => setTimeout(res, 20));
  }
  const dv = new DataView(buf.buffer);
  return { request: dv.getUint32(0, true), flags: dv.getUint32(4, true), size: dv.getUint32(8, true) };
}

test('a running disk grows; the frontend is told on its backend channel and reads the new capacity', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-resize-srv-'));
  const events: DiskEvent[] = [];
  const s = spec(dir, 'a');
  const ds = await DiskServer.start(s);
  ds.on('event', (e) => events.push(e));
  const fe = VhostUserFrontend.connect(s.socketPath);
  const [ours, theirs] = posix.socketPair();
  try {
    const got = await fe.negotiate({ features: FEATURES, protocolFeatures: WITH_CHANNEL });
    assert.equal(got.protocolFeatures, WITH_CHANNEL, 'BACKEND_REQ is offered');
    await fe.request(Request.SET_BACKEND_REQ_FD, undefined, [theirs]);
    assert.equal(await capacitySectors(fe), (16 * MiB) / 512);

    await ds.resize(48 * MiB);
    assert.equal(statSync(s.path).size, 48 * MiB, 'the file grew');
    assert.equal(ds.sizeBytes, 48 * MiB);
    const msg = await readBackendMessage(ours);
    assert.deepEqual(msg, { request: BackendRequest.CONFIG_CHANGE_MSG, flags: VERSION, size: 0 });
    assert.equal(await capacitySectors(fe), (48 * MiB) / 512, 'GET_CONFIG says the new size');
    const resized = events.find((e) => e.kind === 'resized');
    assert.deepEqual(resized, { kind: 'resized', sizeBytes: 48 * MiB });

    // Refusals: a sentence each, nothing changes.
    for (const [size, re] of [
      [16 * MiB, /shrinking a disk is refused/],
      [48 * MiB + 100, /not a multiple of 512/],
    ] as const) {
      await assert.rejects(ds.resize(size), (e: unknown) => e instanceof SpindleError && re.test(e.message));
    }
    assert.equal(statSync(s.path).size, 48 * MiB);
    assert.equal(await capacitySectors(fe), (48 * MiB) / 512);
  } finally {
    closeQuietly(ours);
    closeQuietly(theirs);
    fe.close();
    await ds.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a frontend without the backend channel: the disk still grows, and the event says the guest was not told', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-resize-srv-'));
  const events: DiskEvent[] = [];
  const s = spec(dir, 'b');
  const ds = await DiskServer.start(s);
  ds.on('event', (e) => events.push(e));
  const fe = VhostUserFrontend.connect(s.socketPath);
  const ro = await DiskServer.start(spec(dir, 'ro', { readOnly: true }));
  try {
    await fe.negotiate({ features: FEATURES, protocolFeatures: protocolBit(ProtocolFeature.REPLY_ACK) | protocolBit(ProtocolFeature.CONFIG) });
    await ds.resize(32 * MiB);
    assert.equal(await capacitySectors(fe), (32 * MiB) / 512);
    const resized = events.find((e) => e.kind === 'resized') as Extract<DiskEvent, { kind: 'resized' }>;
    assert.match(resized.guestNotice ?? '', /did not set up the backend request channel/);
    await assert.rejects(ro.resize(32 * MiB), (e: unknown) => e instanceof SpindleError && /read-only/.test(e.message));
  } finally {
    fe.close();
    await ds.stop();
    await ro.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
