// The native posix helpers the vhost-user transport stands on: real sockets, fds, eventfds, mmap.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { mkdtempSync, rmSync, fstatSync, readFileSync, readSync, writeSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { posix, POLL_READABLE, closeQuietly } from '../../electron/dataplane/native/posix.js';
import { within } from '../lib/wait.js';

test('sendMsg/recvMsg carry bytes and file descriptors over a socket pair', () => {
  const [a, b] = posix.socketPair();
  const efd = posix.eventfdCreate();
  try {
    const out = Buffer.from('hello vhost');
    assert.equal(posix.sendMsg(a, out, 0, out.length, [efd, efd]), out.length);
    const buf = Buffer.alloc(64);
    const got = posix.recvMsg(b, buf, 0, buf.length);
    assert.ok(got);
    assert.equal(got.bytes, out.length);
    assert.equal(buf.subarray(0, got.bytes).toString(), 'hello vhost');
    assert.equal(got.fds.length, 2);
    // The received fds are the same eventfd: writing one is readable on the other.
    posix.eventfdWrite(got.fds[0]!, 5);
    assert.equal(posix.eventfdRead(efd), 5);
    got.fds.forEach((fd) => posix.closeFd(fd));
    assert.equal(posix.recvMsg(b, buf, 0, buf.length), null, 'nothing pending -> null');
    posix.closeFd(a);
    assert.equal(posix.recvMsg(b, buf, 0, buf.length)?.bytes, 0, 'peer closed -> 0 bytes');
  } finally {
    closeQuietly(b);
    closeQuietly(efd);
  }
});

test('recvMsg reads only the range asked for: fds stay with the message they came with', () => {
  const [a, b] = posix.socketPair();
  const efd = posix.eventfdCreate();
  try {
    posix.sendMsg(a, Buffer.from('AAAA'), 0, 4);
    posix.sendMsg(a, Buffer.from('BBBB'), 0, 4, [efd]);
    const buf = Buffer.alloc(8);
    const first = posix.recvMsg(b, buf, 0, 4);
    assert.deepEqual([first?.bytes, first?.fds.length], [4, 0]);
    const second = posix.recvMsg(b, buf, 4, 4);
    assert.deepEqual([second?.bytes, second?.fds.length], [4, 1]);
    assert.equal(buf.toString(), 'AAAABBBB');
    second!.fds.forEach((fd) => posix.closeFd(fd));
  } finally {
    closeQuietly(a);
    closeQuietly(b);
    closeQuietly(efd);
  }
});

test('recvMsg and sendMsg refuse ranges outside the buffer', () => {
  const [a, b] = posix.socketPair();
  try {
    assert.throws(() => posix.recvMsg(b, Buffer.alloc(4), 2, 4), /range outside the buffer/);
    assert.throws(() => posix.sendMsg(a, Buffer.alloc(4), 5, 0), /range outside the buffer/);
  } finally {
    posix.closeFd(a);
    posix.closeFd(b);
  }
});

test('listenUnix/acceptUnix/connectUnix and SO_PEERCRED', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spindle-posix-'));
  const path = join(dir, 's.sock');
  const lfd = posix.listenUnix(path);
  try {
    assert.equal(posix.acceptUnix(lfd), -1, 'no pending connection');
    const c = posix.connectUnix(path);
    const s = posix.acceptUnix(lfd);
    assert.ok(s >= 0);
    const cred = posix.peerCred(s);
    assert.equal(cred.pid, process.pid);
    assert.equal(cred.uid, process.getuid!());
    posix.closeFd(c);
    posix.closeFd(s);
    assert.throws(() => posix.listenUnix(path), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE' && e.syscall === 'bind');
    assert.throws(() => posix.connectUnix(join(dir, 'missing.sock')), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    assert.throws(() => posix.listenUnix(join(dir, 'x'.repeat(200))), (e: NodeJS.ErrnoException) => e.code === 'ENAMETOOLONG');
  } finally {
    posix.closeFd(lfd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('watchFd drains an eventfd natively and reports its counter; stop() is idempotent', async () => {
  const efd = posix.eventfdCreate();
  const seen: number[] = [];
  let watch: ReturnType<typeof posix.watchFd> | undefined;
  await within(new Promise<void>((resolve) => {
    watch = posix.watchFd(efd, POLL_READABLE, (events, value) => {
      assert.equal(events & POLL_READABLE, POLL_READABLE);
      seen.push(value);
      if (seen.length === 2) resolve();
      else posix.eventfdWrite(efd, 7);
    }, true);
    posix.eventfdWrite(efd, 3);
  }), { timeoutMs: 30_000, what: 'two eventfd wake-ups through watchFd' });
  watch!.stop();
  watch!.stop();
  assert.deepEqual(seen, [3, 7]);
  assert.equal(posix.eventfdRead(efd), 0, 'the watcher already drained the counter');
  posix.closeFd(efd);
});

/** Lines of /proc/self/maps that map the memfd called `name`. */
const mappingsOf = (name: string): string[] => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes(`/memfd:${name} `));

test('mapShared maps a memfd zero-copy; two mappings see the same bytes; unmap detaches', () => {
  const name = `spindle-map-${process.pid}`;
  const fd = posix.memfdCreate(name, 3 * 4096);
  try {
    assert.equal(fstatSync(fd).size, 3 * 4096);
    const whole = posix.mapShared(fd, 0, 3 * 4096);
    assert.equal(whole.byteLength, 3 * 4096);
    // With SPINDLE_MAP_IN_V8=1 the mapping sits inside a bigger V8 buffer, at an offset.
    if (posix.mapsInV8()) assert.ok(whole.buffer.byteLength > whole.byteLength);
    else assert.equal(whole.byteOffset, 0);
    // An offset that is not page aligned still lands on the right byte.
    const part = posix.mapShared(fd, 4096 + 100, 200);
    assert.equal(part.byteLength, 200);
    whole[4096 + 100] = 0x5a;
    assert.equal(part[0], 0x5a);
    part[199] = 0xa5;
    assert.equal(whole[4096 + 299], 0xa5);
    // Zero copy: what goes through a view is in the file, and what goes through the fd is in the view.
    const fromFd = Buffer.alloc(1);
    readSync(fd, fromFd, 0, 1, 4096 + 299);
    assert.equal(fromFd[0], 0xa5, 'a write through the view is seen through the fd');
    writeSync(fd, Buffer.from([0x3c]), 0, 1, 7);
    assert.equal(whole[7], 0x3c, 'a write through the fd is seen through the view');
    assert.equal(mappingsOf(name).length, 2, 'two live mappings');
    const view = new Uint8Array(part.buffer);
    posix.unmap(part);
    assert.equal(part.byteLength, 0, 'detached');
    assert.equal(view.length, 0, 'views of a detached buffer are empty');
    assert.equal(whole[4096 + 100], 0x5a, 'the other mapping is untouched');
    posix.unmap(part); // idempotent
    assert.throws(() => posix.unmap(new Uint8Array(8)), /not a buffer from mapShared/);
    assert.throws(() => posix.unmap(new ArrayBuffer(8) as unknown as Uint8Array), /unmap\(view from mapShared\)/);
    posix.unmap(whole);
    assert.deepEqual(mappingsOf(name), [], 'nothing of the file stays mapped');
    assert.throws(() => posix.mapShared(fd, 0, 0), /length > 0/);
    assert.throws(() => posix.mapShared(-1, 0, 4096), (e: NodeJS.ErrnoException) => e.code === 'EBADF');
    // A range past the end of the file would SIGBUS when touched: refused before mapping.
    assert.throws(() => posix.mapShared(fd, 4096, 3 * 4096), /beyond the end of the file/);
    // mmap itself refusing (a writable mapping of a read-only fd) leaves nothing mapped or broken.
    const ro = openSync(`/proc/self/fd/${fd}`, 'r');
    try {
      assert.throws(() => posix.mapShared(ro, 0, 4096, true), (e: NodeJS.ErrnoException) => e.code === 'EACCES' && e.syscall === 'mmap');
      const readOnly = posix.mapShared(ro, 0, 4096, false);
      assert.equal(readOnly[7], 0x3c);
      posix.unmap(readOnly);
    } finally {
      closeSync(ro);
    }
    assert.deepEqual(mappingsOf(name), []);
    const again = posix.mapShared(fd, 0, 4096);
    assert.equal(again[7], 0x3c, 'mapping still works after a refusal');
    posix.unmap(again);
  } finally {
    posix.closeFd(fd);
  }
});

test('the helpers work in a worker thread, and a worker that exits with live watches and mappings does not abort', async () => {
  const url = new URL('../../electron/dataplane/native/posix.js', import.meta.url).href;
  const code = `
    import { posix, POLL_READABLE } from ${JSON.stringify(url)};
    import { parentPort } from 'node:worker_threads';
    const efd = posix.eventfdCreate();
    posix.watchFd(efd, POLL_READABLE, (ev, value) => {
      const mfd = posix.memfdCreate('spindle-worker-map-' + process.pid, 4096);
      const mem = posix.mapShared(mfd, 0, 4096);  // left mapped on purpose
      mem[0] = 42;
      parentPort.postMessage({ value, byte: mem[0], mfd });
      // The watch is left running on purpose: the worker is terminated with it open.
    }, true);
    posix.eventfdWrite(efd, 9);
  `;
  const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`));
  const msg = await within(
    new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    }),
    { timeoutMs: 60_000, what: "the worker's report of its watch and mapping" },
  );
  const { mfd, ...seen } = msg as { value: number; byte: number; mfd: number };
  assert.deepEqual(seen, { value: 9, byte: 42 });
  assert.equal(mappingsOf(`spindle-worker-map-${process.pid}`).length, 1);
  const exitCode = await worker.terminate();
  assert.equal(exitCode, 1);
  // The worker's environment teardown unmapped it (in V8 mode: put allocator memory back).
  assert.deepEqual(mappingsOf(`spindle-worker-map-${process.pid}`), []);
  const b = Buffer.alloc(1);
  readSync(mfd, b, 0, 1, 0);
  assert.equal(b[0], 42, 'the write went to the file');
  posix.closeFd(mfd);
  // The process did not abort on the worker's open uv handle, and the addon still serves this
  // thread's loop after the worker's teardown: a watch here sees its eventfd.
  const efd = posix.eventfdCreate();
  try {
    const value = await within(
      new Promise<number>((resolve) => {
        const w = posix.watchFd(efd, POLL_READABLE, (_events, v) => (w.stop(), resolve(v)), true);
        posix.eventfdWrite(efd, 5);
      }),
      { timeoutMs: 30_000, what: "the main thread's watch after the worker's teardown" },
    );
    assert.equal(value, 5);
  } finally {
    posix.closeFd(efd);
  }
});
