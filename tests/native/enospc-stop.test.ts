// ENOSPC policy 'stop' end to end on a real full filesystem: a guest (DriverRing over guest
// memory) writes through the virtio-blk device into the real BlockBackend on a sparse image on a
// tiny loop-mounted ext4 that is nearly full. The write is parked (no IOERR, no used entry), the
// device says why; a file is deleted to free space, retryParked() writes it, the write completes
// OK exactly once and reads back. 'report' on the same full filesystem gives IOERR.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { statfsSync, unlinkSync } from 'node:fs';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import type { AioMode, CacheMode } from '../../electron/shared/modes.js';
import {
  VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_IOERR, VirtioBlkDevice, type NoSpaceEvent,
} from '../../electron/dataplane/virtio/virtio-blk.js';
import type { EnospcPolicy } from '../../electron/shared/modes.js';
import type { DriverRing } from '../../electron/tools/driver-ring.js';
import { makeFile, mountFs } from '../lib/loop.js';
import { TestGuest, pattern } from '../unit/helpers/test-guest.js';

const WRITE = 3 << 20;  // more than the ~1 MiB left free

/** Waits (on the event loop, where completions arrive) until `done()`; a deadline only guards against a hang. */
async function until(what: string, done: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Disk {
  guest: TestGuest;
  ring: DriverRing;
  dev: VirtioBlkDevice;
  events: NoSpaceEvent[];
  /** Puts one request on the ring and kicks; returns the status byte's guest address and the data address. */
  request(type: number, sector: number, data: Uint8Array | number): { status: number; data: number };
  status(addr: number): number;
}

function serve(backend: BlockBackend, enospc: EnospcPolicy, path: string): Disk {
  const guest = new TestGuest(8 << 20);
  const dev = new VirtioBlkDevice(backend, { numQueues: 1, enospc, diskPath: path });
  dev.setFeatures(dev.deviceFeatures);
  dev.setMemory(guest.regions);
  const ring = guest.ring(16, true);
  dev.startQueue(0, { size: ring.size, descAddr: ring.descAddr, availAddr: ring.availAddr, usedAddr: ring.usedAddr, lastAvailIdx: 0, notify: () => {} });
  const events: NoSpaceEvent[] = [];
  dev.onNoSpace = (e) => events.push(e);
  return {
    guest, ring, dev, events,
    request(type, sector, data) {
      const hdr = guest.header(type, sector);
      const status = guest.status();
      const len = typeof data === 'number' ? data : data.length;
      const addr = guest.alloc(len, 4096);
      if (typeof data !== 'number') guest.bytes(addr, len).set(data);
      ring.addChain([{ addr: hdr, len: 16, write: false }, { addr, len, write: typeof data === 'number' }, { addr: status, len: 1, write: true }]);
      ring.publish();
      dev.kick(0);
      return { status, data: addr };
    },
    status: (addr) => guest.bytes(addr, 1)[0]!,
  };
}

/** Fills the filesystem with a ballast file, leaving less free space than one guest write. */
function fillUp(mountpoint: string): string {
  const ballast = `${mountpoint}/ballast`;
  const st = statfsSync(mountpoint);
  const free = st.bfree * st.bsize;  // root (the tests) may use the blocks reserved for root too
  execFileSync('fallocate', ['-l', String(free - (1 << 20)), ballast]);  // ~1 MiB left (metadata needs some)
  return ballast;
}

const freeUp = (ballast: string, mountpoint: string): void => {
  unlinkSync(ballast);
  execFileSync('sync', ['-f', mountpoint]);  // ext4 reuses freed blocks once the journal commits
};

const COMBOS: Array<[AioMode, CacheMode]> = [['threads', 'writeback'], ['native', 'none'], ['io_uring', 'none']];

test("enospc 'stop': a full filesystem parks the guest's write, says why, and resume after freeing space completes it", async (t) => {
  const fs = mountFs('ext4', 16, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const image = makeFile(`${fs.mountpoint}/disk.img`, 32 << 20);  // sparse, larger than the filesystem
  for (const [aio, cache] of COMBOS) {
    const ballast = fillUp(fs.mountpoint);
    const backend = await BlockBackend.open(image, { aio, cache, nowait: 'off' });
    try {
      const d = serve(backend, 'stop', image);
      const data = pattern(WRITE, 11);
      const w = d.request(VIRTIO_BLK_T_OUT, 0, data);
      await until(`${aio}/${cache}: the no-space event`, () => d.events.length > 0 || d.status(w.status) !== 0xff);
      assert.equal(d.status(w.status), 0xff, `${aio}/${cache}: the guest got no error status`);
      assert.equal(d.ring.usedIdx(), 0, 'and no used entry');
      assert.equal(d.dev.parkedRequests, 1);
      assert.equal(d.events.length, 1);
      assert.equal(d.events[0]!.sentence, `The filesystem holding ${image} is full: 1 write waits until space is freed.`);
      assert.deepEqual({ ...d.events[0]!, sentence: '' }, { parked: 1, parkedBytes: WRITE, retried: false, sentence: '' });
      assert.ok(backend.counters.snapshot().write.errors >= 1, 'the backend did meet ENOSPC');

      freeUp(ballast, fs.mountpoint);
      assert.deepEqual(await d.dev.retryParked(), { retried: 1, parked: 0 });
      await until('the retried write', () => d.status(w.status) !== 0xff);
      assert.equal(d.status(w.status), VIRTIO_BLK_S_OK, `${aio}/${cache}: the write completes after space was freed`);
      assert.equal(d.events.length, 1, 'no second event');
      assert.equal(d.ring.usedIdx(), 1, 'used once');

      const r = d.request(VIRTIO_BLK_T_IN, 0, WRITE);
      await until('the read', () => d.status(r.status) !== 0xff);
      assert.equal(d.status(r.status), VIRTIO_BLK_S_OK);
      assert.ok(Buffer.from(d.guest.bytes(r.data, WRITE)).equals(Buffer.from(data)), `${aio}/${cache}: nothing lost`);
      await backend.drain();
    } finally {
      await backend.close();
    }
    // Give the space back for the next combination.
    const b = await BlockBackend.open(image, { cache: 'writeback' });
    await b.discard(0, 32 << 20).finally(() => b.close());
  }
});

test("enospc 'report': the same full filesystem gives the guest IOERR, nothing parked", async (t) => {
  const fs = mountFs('ext4', 16, { base: '/var/tmp' });
  t.after(() => fs.cleanup());
  const image = makeFile(`${fs.mountpoint}/disk.img`, 32 << 20);
  fillUp(fs.mountpoint);
  const backend = await BlockBackend.open(image, { aio: 'threads', cache: 'writeback' });
  try {
    const d = serve(backend, 'report', image);
    const w = d.request(VIRTIO_BLK_T_OUT, 0, pattern(WRITE, 12));
    await until('the write', () => d.status(w.status) !== 0xff);
    assert.equal(d.status(w.status), VIRTIO_BLK_S_IOERR);
    assert.equal(d.dev.parkedRequests, 0);
    assert.equal(d.events.length, 0);
  } finally {
    await backend.close();
  }
});
