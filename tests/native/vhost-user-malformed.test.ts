// Malformed input from a frontend: each case is fed over a real socket and must
// produce a clear logged reason; the connection (or only the affected ring) stops, the process
// never crashes, the server accepts the next frontend, and another disk's server is untouched.
import { test, before, after } from '../lib/test.js';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VhostUserServer } from '../../electron/dataplane/vhost-user/server.js';
import { VhostUserFrontend } from '../../electron/tools/vhost-user-frontend.js';
import { encodeMemTable, encodeMessage, encodeState, encodeU64, encodeVringAddr } from '../../electron/dataplane/vhost-user/codec.js';
import { FLAG_NEED_REPLY, FLAG_REPLY, HEADER_SIZE, Request } from '../../electron/dataplane/vhost-user/protocol.js';
import { posix, closeQuietly } from '../../electron/dataplane/native/posix.js';
import { RecordingDevice } from './vhost-user-double.js';
import { sleep, waitFor } from '../lib/wait.js';

const ALL = (1n << 64n) - 1n;
let dir: string;
let victim: { server: VhostUserServer; device: RecordingDevice; logs: string[]; path: string };
let bystander: { server: VhostUserServer; fe: VhostUserFrontend };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'spindle-vhu-bad-'));
  const device = new RecordingDevice(2);
  const path = join(dir, 'victim.sock');
  const server = VhostUserServer.listen({ socketPath: path, device });
  const logs: string[] = [];
  server.on('log', (l) => logs.push(l));
  victim = { server, device, logs, path };
  // Another disk, served alongside, with a frontend that stays connected through every case.
  const other = VhostUserServer.listen({ socketPath: join(dir, 'other.sock'), device: new RecordingDevice(1) });
  const fe = VhostUserFrontend.connect(join(dir, 'other.sock'));
  await fe.negotiate({ features: ALL, protocolFeatures: ALL });
  bystander = { server: other, fe };
});

after(async () => {
  // The other disk never noticed.
  assert.equal(await bystander.fe.getQueueNum(), 1);
  bystander.fe.close();
  await bystander.server.close();
  await victim.server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A raw frontend: writes bytes as given, reads whatever comes back. */
class RawPeer {
  readonly fd = posix.connectUnix(victim.path);
  send(bytes: Uint8Array, fds: number[] = []): void {
    assert.equal(posix.sendMsg(this.fd, bytes, 0, bytes.length, fds), bytes.length);
  }
  /** Resolves with the next reply's payload, or 'closed' once the server hung up. */
  async next(): Promise<Uint8Array | 'closed'> {
    const buf = new Uint8Array(512);
    let have = 0;
    for (let i = 0; i < 1000; i++) {
      let got;
      try {
        got = posix.recvMsg(this.fd, buf, have, buf.length - have);
      } catch (err) {
        // Closed with our bytes still unread: the kernel resets the connection.
        if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') return 'closed';
        throw err;
      }
      if (got) {
        got.fds.forEach(closeQuietly);
        if (got.bytes === 0) return 'closed';
        have += got.bytes;
        if (have >= HEADER_SIZE) {
          const size = new DataView(buf.buffer).getUint32(8, true);
          if (have >= HEADER_SIZE + size) return buf.slice(HEADER_SIZE, HEADER_SIZE + size);
        }
      } else await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error('no answer from the server');
  }
  close(): void {
    closeQuietly(this.fd);
  }
}

/** Feeds one bad message; expects the connection to be closed with a logged reason matching `reason`. */
async function expectClosed(reason: RegExp, build: (peer: RawPeer) => void): Promise<void> {
  const peer = new RawPeer();
  const logsBefore = victim.logs.length;
  try {
    build(peer);
    assert.equal(await peer.next(), 'closed');
    const lines = victim.logs.slice(logsBefore);
    assert.ok(lines.some((l) => l.includes('closing the connection') && reason.test(l)), `expected a log line matching ${reason}, got:\n${lines.join('\n')}`);
  } finally {
    peer.close();
  }
  await assertServesNextFrontend();
  await victimIdle();
}

/** The victim server has no frontend (the last one's close has been seen). */
const victimIdle = (): Promise<true> => waitFor(() => !victim.server.connected, { timeoutMs: 30_000, what: 'the victim server to see its frontend go' });

/** Once the bad peer is gone, the server answers a well-behaved frontend. */
async function assertServesNextFrontend(): Promise<void> {
  await victimIdle();
  const fe = VhostUserFrontend.connect(victim.path);
  try {
    assert.equal(await fe.getQueueNum(), 2);
  } finally {
    fe.close();
  }
}

test('a payload of the wrong size', async () => {
  await expectClosed(/SET_FEATURES: payload of 4 bytes, expected 8/, (p) => p.send(encodeMessage(Request.SET_FEATURES, 0, new Uint8Array(4))));
});

test('an unknown request code', async () => {
  await expectClosed(/request 99 is not a request Spindle's vhost-user backend knows/, (p) => p.send(encodeMessage(99, 0)));
});

test('an unsupported protocol version', async () => {
  await expectClosed(/unsupported protocol version 2/, (p) => {
    const m = encodeMessage(Request.GET_FEATURES, 0);
    new DataView(m.buffer).setUint32(4, 2, true);
    p.send(m);
  });
});

test('a size field larger than any message', async () => {
  await expectClosed(/payload of 1048576 bytes is larger than any vhost-user message/, (p) => {
    const m = encodeMessage(Request.SET_FEATURES, 0, new Uint8Array(8));
    new DataView(m.buffer).setUint32(8, 1 << 20, true);
    p.send(m);
  });
});

test('a message marked as a reply', async () => {
  await expectClosed(/arrived marked as a reply/, (p) => p.send(encodeMessage(Request.GET_FEATURES, FLAG_REPLY)));
});

test('SET_MEM_TABLE without its file descriptor', async () => {
  await expectClosed(/SET_MEM_TABLE: carries no file descriptor, expected 1 file descriptor/, (p) =>
    p.send(encodeMessage(Request.SET_MEM_TABLE, 0, encodeMemTable([{ guestAddr: 0, size: 4096, frontendAddr: 0x1000, mmapOffset: 0 }]))));
});

test('SET_VRING_KICK without a file descriptor (and without the no-fd flag)', async () => {
  await expectClosed(/SET_VRING_KICK: carries no file descriptor, expected 1 file descriptor/, (p) => p.send(encodeMessage(Request.SET_VRING_KICK, 0, encodeU64(0))));
});

test('a file descriptor on a message that takes none (it is closed, not leaked)', async () => {
  const efd = posix.eventfdCreate();
  try {
    await expectClosed(/SET_FEATURES: carries 1 file descriptor, expected no file descriptor/, (p) => p.send(encodeMessage(Request.SET_FEATURES, 0, encodeU64(0)), [efd]));
  } finally {
    posix.closeFd(efd);
  }
});

test('too many memory regions', async () => {
  const regions = Array.from({ length: 9 }, (_, i) => ({ guestAddr: i * 4096, size: 4096, frontendAddr: 0x10000 + i * 4096, mmapOffset: 0 }));
  await expectClosed(/the memory table has 9 regions, more than the 8 allowed/, (p) => p.send(encodeMessage(Request.SET_MEM_TABLE, 0, encodeMemTable(regions))));
});

test('a memory region larger than the file behind it', async () => {
  const mfd = posix.memfdCreate('small', 4096);
  try {
    await expectClosed(/memory region 0 .* cannot be mapped: mmap \(the range ends beyond the end of the file\)/, (p) =>
      p.send(encodeMessage(Request.SET_MEM_TABLE, 0, encodeMemTable([{ guestAddr: 0, size: 1 << 20, frontendAddr: 0x1000, mmapOffset: 0 }])), [mfd]));
  } finally {
    posix.closeFd(mfd);
  }
});

test('overlapping memory regions', async () => {
  const a = posix.memfdCreate('a', 8192);
  const b = posix.memfdCreate('b', 8192);
  try {
    await expectClosed(/memory region 1 \(guest 0x1000\+0x2000\) overlaps region 0/, (p) =>
      p.send(encodeMessage(Request.SET_MEM_TABLE, 0, encodeMemTable([
        { guestAddr: 0, size: 8192, frontendAddr: 0x100000, mmapOffset: 0 },
        { guestAddr: 4096, size: 8192, frontendAddr: 0x200000, mmapOffset: 0 },
      ])), [a, b]));
  } finally {
    posix.closeFd(a);
    posix.closeFd(b);
  }
});

test('a vring index out of range', async () => {
  await expectClosed(/vring index 5 is out of range \(the device has 2 queues\)/, (p) => p.send(encodeMessage(Request.SET_VRING_NUM, 0, encodeState(5, 128))));
});

test('features that were not offered', async () => {
  await expectClosed(/acknowledges features that were not offered/, (p) => p.send(encodeMessage(Request.SET_FEATURES, 0, encodeU64(1n << 40n))));
});

test('vring addresses outside the memory table: only that ring is refused, the connection goes on', async () => {
  const fe = VhostUserFrontend.connect(victim.path);
  const mem = VhostUserFrontend.allocateMemory(1 << 16);
  const broken: [number, string][] = [];
  const onBroken = (q: number, r: string) => broken.push([q, r]);
  victim.server.on('broken', onBroken);
  try {
    await fe.negotiate({ features: ALL, protocolFeatures: ALL });
    await fe.setMemTable([mem]);
    await fe.request(Request.SET_VRING_NUM, encodeState(0, 16));
    await assert.rejects(
      fe.request(Request.SET_VRING_ADDR, encodeVringAddr({ index: 0, flags: 0, descAddr: 0xdead0000, usedAddr: mem.frontendAddr, availAddr: mem.frontendAddr, logAddr: 0 })),
      /refused SET_VRING_ADDR/);
    assert.deepEqual(broken.map(([q]) => q), [0]);
    assert.match(broken[0]![1], /the descriptor table address 0xdead0000 is not in the guest memory table/);
    // Ring 1 still works, and so does the connection.
    await fe.setupVring(1, { size: 16, descAddr: 0, availAddr: 0x1000, usedAddr: 0x2000 }, () => {});
    await fe.enableVring(1, true);
    assert.ok(victim.device.started.has(1));
    // A ring whose tables run past the end of its region is refused when it would start.
    await fe.setupVring(0, { size: 4096, descAddr: 0xf000, availAddr: 0x1000, usedAddr: 0x2000 }, () => {});
    await fe.enableVring(0, true);
    assert.equal(victim.device.started.has(0), false);
    assert.match(broken.at(-1)![1], /ring 0: the descriptor table \(65536 bytes at user address .*\) is not inside one guest memory region/);
    // Polling mode (kick without an fd) is refused for that ring only.
    await assert.rejects(fe.setVringKickWithoutFd(0), /refused SET_VRING_KICK/);
    assert.equal(await fe.getQueueNum(), 2);
  } finally {
    victim.server.off('broken', onBroken);
    fe.close();
    VhostUserFrontend.freeMemory(mem);
    await victimIdle();
  }
});

test('GET_CONFIG past the config space gets the protocol\'s empty error reply; the connection goes on', async () => {
  const peer = new RawPeer();
  try {
    peer.send(encodeMessage(Request.GET_CONFIG, 0, (() => { const p = new Uint8Array(12 + 8); new DataView(p.buffer).setUint32(0, 200, true); new DataView(p.buffer).setUint32(4, 8, true); return p; })()));
    const reply = await peer.next();
    assert.ok(reply instanceof Uint8Array && reply.length === 0);
    peer.send(encodeMessage(Request.GET_QUEUE_NUM, FLAG_NEED_REPLY));
    const q = await peer.next();
    assert.ok(q instanceof Uint8Array);
    assert.equal(new DataView(q.buffer).getBigUint64(0, true), 2n);
  } finally {
    peer.close();
    await victimIdle();
  }
});

test('a frontend that disconnects mid-message leaves no trace: no fd kept, the next frontend is served', async () => {
  await victimIdle();
  const openFds = (): number => readdirSync('/proc/self/fd').length;
  const baseline = openFds();
  const efd = posix.eventfdCreate();
  const peer = new RawPeer();
  const full = encodeMessage(Request.SET_MEM_TABLE, 0, encodeMemTable([{ guestAddr: 0, size: 4096, frontendAddr: 0x1000, mmapOffset: 0 }]));
  posix.sendMsg(peer.fd, full, 0, 20, [efd]);
  // First the positive thing: the server took the connection (and with it the fd in flight).
  await waitFor(() => victim.server.connected, { timeoutMs: 30_000, what: 'the server to accept the half-sent message' });
  await sleep(20);
  peer.close();
  posix.closeFd(efd);
  await victimIdle();
  await waitFor(() => openFds() === baseline, {
    timeoutMs: 30_000,
    what: `the fd count to return to ${baseline} (the half-sent message's eventfd and the connection closed)`,
    detail: () => `${openFds()} open`,
  });
  await assertServesNextFrontend();
});
