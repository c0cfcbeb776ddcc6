// Inflight I/O tracking (vhost-user.rst "Inflight I/O tracking") through the real virtio-blk
// device and hand-built rings: the backend is stopped at every store of the protocol (a throw
// from the test hook, after copying guest RAM, the inflight region and the disk as they were at
// that instant: what SIGKILL leaves behind), a new device starts on that memory like a restarted
// backend, and the guest must see every request completed exactly once with the right data.
// The block layer is the MemoryBlockDevice test double (tests/unit/helpers).
import { test, afterEach } from '../lib/test.js';
import assert from 'node:assert/strict';
import { BlockOp } from '../../electron/dataplane/block/types.js';
import {
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_S_OK,
  VirtioBlkDevice,
} from '../../electron/dataplane/virtio/virtio-blk.js';
import { InflightLog, inflightSteps, INFLIGHT_VERSION } from '../../electron/dataplane/virtio/inflight-log.js';
import type { DriverRing, DriverBuffer } from '../../electron/tools/driver-ring.js';
import { MemoryBlockDevice } from './helpers/memory-block-device.js';
import { TestGuest, pattern } from './helpers/test-guest.js';

const RING = 32;
const SECTOR = 512;
const regionBytes = (size: number) => Math.ceil((16 + 16 * size) / 64) * 64;

afterEach(() => {
  inflightSteps.hook = null;
});

class Crash extends Error {}

interface Req {
  name: string;
  type: number;
  sector: number;
  data: Uint8Array | null;
  len: number;
  dataAddr: number;
  status: number;
}

/** One guest, one queue, and whichever backend instance is currently serving it. */
class World {
  readonly guest = new TestGuest(1 << 20);
  readonly ring: DriverRing;
  readonly region = new SharedArrayBuffer(regionBytes(RING));
  blk!: MemoryBlockDevice;
  dev!: VirtioBlkDevice;
  readonly outstanding = new Map<number, Req>();
  readonly done: Req[] = [];
  resubmitted = 0;
  restarts = 0;
  broken: string[] = [];
  private snap: { guest: Uint8Array; region: Uint8Array; disk: Uint8Array } | null = null;

  constructor() {
    this.ring = this.guest.ring(RING, true);
    const disk = new Uint8Array(1 << 20);
    disk.set(pattern(4096, 99), 100 * SECTOR);
    this.startBackend(disk);
  }

  /** Copies what a killed backend leaves behind: called from the step hook just before it throws. */
  snapshot(): void {
    this.snap = {
      guest: new Uint8Array(this.guest.regions[0].memory).slice(),
      region: new Uint8Array(this.region).slice(),
      disk: this.blk.disk.slice(),
    };
  }

  private startBackend(disk: Uint8Array): void {
    const blk = new MemoryBlockDevice({ sizeBytes: disk.length });
    blk.disk.set(disk);
    const dev = new VirtioBlkDevice(blk, { numQueues: 1 });
    dev.setFeatures(dev.deviceFeatures);
    dev.setMemory(this.guest.regions);
    // The dead instance goes on running after the throw: what it reports is not the new one's.
    dev.onBroken = (_q, reason) => {
      if (this.dev === dev && !this.crashed) this.broken.push(reason);
    };
    dev.onResubmitted = (_q, n) => {
      this.resubmitted += n;
    };
    this.blk = blk;
    this.dev = dev;
    // QEMU's base after a backend died: the used idx in guest memory (GET_VRING_BASE failed).
    dev.startQueue(0, {
      size: RING,
      descAddr: this.ring.descAddr,
      availAddr: this.ring.availAddr,
      usedAddr: this.ring.usedAddr,
      lastAvailIdx: this.ring.usedIdx(),
      notify: () => undefined,
      inflight: new DataView(this.region),
    });
    // The server looks at the ring as soon as it starts it (tryStart -> kick).
    dev.kick(0);
  }

  /** The old backend is gone; memory goes back to the instant it died and a new one takes over. */
  private restart(): void {
    const s = this.snap!;
    this.snap = null;
    this.restarts++;
    new Uint8Array(this.guest.regions[0].memory).set(s.guest);
    new Uint8Array(this.region).set(s.region);
    this.startBackend(s.disk);
  }

  /** True between a crash and the restart: the dead instance's stores no longer count. */
  get crashed(): boolean {
    return this.snap !== null;
  }

  /** Runs a backend-side action; a crash in it (or in the restarts it causes) ends in a running
   *  backend. The device catches some throws itself (a bug only stops the queue), so a crash is
   *  recognised by the snapshot it left, not by the exception reaching here. */
  backend(action: () => void): void {
    try {
      action();
    } catch (err) {
      if (!(err instanceof Crash)) throw err;
    }
    while (this.snap) {
      try {
        this.restart();
      } catch (err) {
        if (!(err instanceof Crash)) throw err;
      }
    }
  }

  send(name: string, type: number, sector: number, data: Uint8Array | number | null): Req {
    const hdr = this.guest.header(type, sector);
    const status = this.guest.status();
    const bufs: DriverBuffer[] = [{ addr: hdr, len: 16, write: false }];
    let dataAddr = 0;
    let len = 0;
    if (data !== null) {
      len = typeof data === 'number' ? data : data.length;
      dataAddr = this.guest.alloc(len, 512);
      if (typeof data !== 'number') this.guest.bytes(dataAddr, len).set(data);
      bufs.push({ addr: dataAddr, len, write: typeof data === 'number' });
    }
    bufs.push({ addr: status, len: 1, write: true });
    const head = this.ring.addChain(bufs);
    assert.ok(head >= 0, 'test ring full');
    assert.equal(this.outstanding.has(head), false);
    const r: Req = { name, type, sector, data: typeof data === 'object' ? data : null, len, dataAddr, status };
    this.outstanding.set(head, r);
    return r;
  }

  /** The guest takes its used entries (DriverRing throws on a head that is not in flight). */
  collect(): void {
    this.ring.collect((head) => {
      const r = this.outstanding.get(head);
      assert.ok(r, `head ${head} completed but is not outstanding`);
      this.outstanding.delete(head);
      this.done.push(r);
    });
  }
}

const w = (i: number) => pattern(4096, i + 1);

/** The scenario: a batch of writes, a read and a flush; out-of-order completions; more requests
 *  after that; then everything completes. Crashes land wherever `crashAt` says (global step numbers). */
function run(crashAt: number[]): { world: World; steps: string[]; crashedAt: string[] } {
  const world = new World();
  const pending = [...crashAt];
  const steps: string[] = [];
  const crashedAt: string[] = [];
  inflightSteps.hook = (step) => {
    if (world.crashed) return;
    steps.push(step);
    if (steps.length - 1 === pending[0]) {
      pending.shift();
      crashedAt.push(step);
      world.snapshot();
      throw new Crash(step);
    }
  };
  try {
    world.send('w1', VIRTIO_BLK_T_OUT, 0, w(1));
    world.send('w2', VIRTIO_BLK_T_OUT, 8, w(2));
    world.send('w3', VIRTIO_BLK_T_OUT, 16, w(3));
    world.send('rd', VIRTIO_BLK_T_IN, 100, 4096);
    world.send('fl', VIRTIO_BLK_T_FLUSH, 0, null);
    world.ring.publish();
    world.backend(() => world.dev.kick(0));
    world.collect();
    // w2 and the read finish first.
    world.backend(() => world.blk.completeWhere((r) => r.offset === 8 * SECTOR || (r.op === BlockOp.Read && r.offset === 100 * SECTOR)));
    world.collect();
    world.send('w4', VIRTIO_BLK_T_OUT, 24, w(4));
    world.ring.publish();
    world.backend(() => world.dev.kick(0));
    world.collect();
    for (let i = 0; i < 10 && world.outstanding.size > 0; i++) {
      world.backend(() => world.blk.completeAll());
      world.collect();
    }
  } finally {
    inflightSteps.hook = null;
  }
  return { world, steps, crashedAt };
}

function checkOutcome(world: World, label: string): void {
  assert.deepEqual(world.broken, [], `${label}: a queue broke`);
  assert.equal(
    world.outstanding.size,
    0,
    `${label}: requests never completed: ${[...world.outstanding.values()].map((r) => r.name).join(', ')}`,
  );
  assert.deepEqual(
    world.done.map((r) => r.name).sort(),
    ['fl', 'rd', 'w1', 'w2', 'w3', 'w4'],
    `${label}: each request completes exactly once`,
  );
  for (const r of world.done) assert.equal(world.guest.bytes(r.status, 1)[0], VIRTIO_BLK_S_OK, `${label}: ${r.name} status`);
  const disk = world.blk.disk;
  for (const [i, sector] of [
    [1, 0],
    [2, 8],
    [3, 16],
    [4, 24],
  ] as const) {
    assert.deepEqual(disk.subarray(sector * SECTOR, sector * SECTOR + 4096), w(i), `${label}: w${i} on disk`);
  }
  const rd = world.done.find((r) => r.name === 'rd')!;
  assert.deepEqual(world.guest.bytes(rd.dataAddr, 4096), pattern(4096, 99), `${label}: read data`);
  // Nothing left marked in flight, and the region agrees with the ring.
  const log = new InflightLog(new DataView(world.region), RING);
  for (let h = 0; h < RING; h++) assert.equal(log.isInflight(h), false, `${label}: head ${h} still marked in flight`);
  assert.equal(log.usedIdx, world.ring.usedIdx(), `${label}: region used_idx`);
}

test('no crash: requests are tracked in the region and nothing is left in flight', () => {
  const { world, steps } = run([]);
  checkOutcome(world, 'no crash');
  assert.equal(world.restarts, 0);
  assert.equal(world.resubmitted, 0);
  assert.ok(steps.includes('popped') && steps.includes('staged') && steps.includes('used-idx'));
});

test('pop marks a head with a rising counter; completion stages it in the batch and clears it after publishing', () => {
  const world = new World();
  world.send('a', VIRTIO_BLK_T_OUT, 0, w(1));
  world.send('b', VIRTIO_BLK_T_OUT, 8, w(2));
  world.ring.publish();
  world.dev.kick(0);
  const log = new InflightLog(new DataView(world.region), RING);
  const heads = [...world.outstanding.keys()];
  assert.deepEqual(
    heads.map((h) => log.isInflight(h)),
    [true, true],
  );
  assert.ok(log.counterOf(heads[0]!) < log.counterOf(heads[1]!), 'counters follow pop order');
  world.blk.completeWhere((r) => r.offset === 8 * SECTOR);
  assert.equal(log.isInflight(heads[1]!), false);
  assert.equal(log.isInflight(heads[0]!), true);
  assert.equal(log.lastBatchHead, heads[1]);
  assert.equal(log.usedIdx, 1);
  assert.equal(new DataView(world.region).getUint16(8, true), INFLIGHT_VERSION);
});

test('a crash at every step of the protocol: after the restart each request completes exactly once, data intact', (t) => {
  const total = run([]).steps.length;
  assert.ok(total > 30, `only ${total} steps`);
  const kinds = new Set<string>();
  let resubmitted = 0;
  for (let k = 0; k < total; k++) {
    const { world, crashedAt } = run([k]);
    assert.equal(crashedAt.length, 1, `crash point ${k} was not reached`);
    checkOutcome(world, `crash at step ${k} (${crashedAt[0]})`);
    assert.equal(world.restarts, 1);
    kinds.add(crashedAt[0]!);
    resubmitted += world.resubmitted;
  }
  for (const kind of ['counter', 'popped', 'next', 'staged', 'used-published', 'cleared', 'used-idx']) {
    assert.ok(kinds.has(kind), `no crash landed after a '${kind}' store`);
  }
  assert.ok(resubmitted > total, `only ${resubmitted} requests resubmitted over ${total} crashes`);
  t.diagnostic(`crash points ${total}, restarts ${total}, requests resubmitted ${resubmitted}, requests lost or doubled 0`);
});

test('a second crash during the restart (fix-up, resubmission, completion) is recovered as well', (t) => {
  const total = run([]).steps.length;
  let fixups = 0;
  let runs = 0;
  for (let k = 0; k < total; k++) {
    for (let extra = 1; extra <= 4; extra++) {
      const { world, crashedAt } = run([k, k + extra]);
      checkOutcome(world, `crashes at steps ${k} and ${k + extra} (${crashedAt.join(', ')})`);
      if (crashedAt[1]?.startsWith('fixup')) fixups++;
      runs++;
    }
  }
  assert.ok(fixups > 0, 'no second crash landed inside the used_idx fix-up');
  t.diagnostic(`double-crash runs ${runs}, second crash inside the fix-up ${fixups}`);
});

test('the used_idx fix-up: a batch published but not cleared is not resubmitted', () => {
  const world = new World();
  world.send('a', VIRTIO_BLK_T_OUT, 0, w(1));
  world.send('b', VIRTIO_BLK_T_OUT, 8, w(2));
  world.ring.publish();
  world.dev.kick(0);
  let crashed = false;
  inflightSteps.hook = (step) => {
    if (step === 'used-published' && !crashed) {
      crashed = true;
      world.snapshot();
      throw new Crash(step);
    }
  };
  world.backend(() => world.blk.completeAll());
  inflightSteps.hook = null;
  world.collect();
  assert.equal(world.restarts, 1);
  assert.equal(world.resubmitted, 0, 'both were already used: nothing to resubmit');
  assert.equal(world.outstanding.size, 0);
  assert.deepEqual(world.done.map((r) => r.name).sort(), ['a', 'b']);
});

test('a region that contradicts itself stops only that queue, with a sentence', () => {
  const cases: [string, (v: DataView) => void, RegExp][] = [
    ['unknown version', (v) => v.setUint16(8, 7, true), /version 7/],
    [
      'wrong ring size',
      (v) => {
        v.setUint16(8, 1, true);
        v.setUint16(10, 16, true);
      },
      /ring of 16 entries, the ring has 32/,
    ],
    [
      'flag not 0 or 1',
      (v) => {
        v.setUint16(8, 1, true);
        v.setUint16(10, RING, true);
        v.setUint8(16 + 16 * 3, 9);
      },
      /marks descriptor 3 with 9/,
    ],
    [
      'used_idx far behind',
      (v) => {
        v.setUint16(8, 1, true);
        v.setUint16(10, RING, true);
        v.setUint16(14, 100, true);
      },
      /more than the ring holds/,
    ],
    [
      'last batch past the ring',
      (v) => {
        v.setUint16(8, 1, true);
        v.setUint16(10, RING, true);
        v.setUint16(14, 0xffff, true);
        v.setUint16(12, 300, true);
      },
      /descriptor 300, past the ring size/,
    ],
  ];
  for (const [label, corrupt, expected] of cases) {
    const guest = new TestGuest(1 << 16);
    const ring = guest.ring(RING, false);
    const region = new SharedArrayBuffer(regionBytes(RING));
    corrupt(new DataView(region));
    const dev = new VirtioBlkDevice(new MemoryBlockDevice(), { numQueues: 2 });
    dev.setFeatures(dev.deviceFeatures);
    dev.setMemory(guest.regions);
    const broken: string[] = [];
    dev.onBroken = (q, reason) => broken.push(`${q}: ${reason}`);
    dev.startQueue(0, {
      size: RING,
      descAddr: ring.descAddr,
      availAddr: ring.availAddr,
      usedAddr: ring.usedAddr,
      lastAvailIdx: 0,
      notify: () => undefined,
      inflight: new DataView(region),
    });
    assert.equal(broken.length, 1, label);
    assert.match(broken[0]!, /^0: Queue 0 stopped: /, label);
    assert.match(broken[0]!, expected, label);
  }
  // Too small a region is refused the same way.
  const guest = new TestGuest(1 << 16);
  const ring = guest.ring(RING, false);
  const dev = new VirtioBlkDevice(new MemoryBlockDevice(), { numQueues: 1 });
  dev.setFeatures(dev.deviceFeatures);
  dev.setMemory(guest.regions);
  const broken: string[] = [];
  dev.onBroken = (_q, reason) => broken.push(reason);
  dev.startQueue(0, {
    size: RING,
    descAddr: ring.descAddr,
    availAddr: ring.availAddr,
    usedAddr: ring.usedAddr,
    lastAvailIdx: 0,
    notify: () => undefined,
    inflight: new DataView(new SharedArrayBuffer(64)),
  });
  assert.match(broken[0] ?? '', /inflight region is 64 bytes, a ring of 32 needs 528/);
});
