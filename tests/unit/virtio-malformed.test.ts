// Every malformed chain stops only its own queue, marks the device broken (NEEDS_RESET) and
// reports a sentence; the other queue keeps serving requests.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_S_OK } from '../../electron/dataplane/virtio/virtio-blk.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../electron/dataplane/virtio/split-virtqueue.js';
import type { QueueFault } from '../../electron/dataplane/virtio/virtio-blk.js';
import { harness, send, kick, statusOf, GUEST_BASE, type Harness } from './helpers/test-guest.js';

const R = 0;
const W = VIRTQ_DESC_F_WRITE;
const N = VIRTQ_DESC_F_NEXT;
const I = VIRTQ_DESC_F_INDIRECT;

/** Writes a raw descriptor list into an indirect table in guest memory; returns its address. */
function table(h: Harness, descs: [number, number, number, number][]): number {
  const t = h.guest.alloc(16 * descs.length);
  const v = h.guest.view(t, 16 * descs.length);
  descs.forEach(([addr, len, flags, next], k) => {
    v.setBigUint64(16 * k, BigInt(addr), true);
    v.setUint32(16 * k + 8, len, true);
    v.setUint16(16 * k + 12, flags, true);
    v.setUint16(16 * k + 14, next, true);
  });
  return t;
}

function expectBroken(h: Harness, kind: QueueFault['kind'], reason: RegExp): void {
  assert.equal(h.broken.length, 1, `one broken event, got ${JSON.stringify(h.broken)}`);
  assert.equal(h.dev.fault?.kind, kind, `the fault's kind, for ${h.broken[0].reason}`);
  assert.equal(h.broken[0].queue, 0);
  assert.match(h.broken[0].reason, /^Queue 0 stopped: /);
  assert.match(h.broken[0].reason, reason);
  assert.doesNotMatch(h.broken[0].reason, /internal error/);
  assert.equal(h.dev.broken, true, 'device marked NEEDS_RESET');
  // The broken queue ignores further kicks...
  const before = h.blk.log.length;
  send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  kick(h, 0);
  assert.equal(h.blk.log.length, before, 'a broken queue takes no more requests');
  // ...and the other queue goes on.
  const ok = send(h, 1, VIRTIO_BLK_T_OUT, 0, new Uint8Array(512).fill(7));
  kick(h, 1);
  h.blk.completeAll();
  assert.equal(statusOf(h, ok), VIRTIO_BLK_S_OK);
  assert.equal(h.blk.disk[0], 7);
  assert.equal(h.broken.length, 1);
}

/** A chain of raw descriptors on queue 0 (descriptor k links to k+1 where N is set unless next is given). */
function rawChain(h: Harness, descs: [number, number, number, number?][]): void {
  const ring = h.rings[0];
  descs.forEach(([addr, len, flags, next], k) => ring.writeDesc(k, addr, len, flags, next ?? k + 1));
  ring.pushAvailRaw(0);
}

const parts = (h: Harness) => ({ hdr: h.guest.header(VIRTIO_BLK_T_IN, 0), data: h.guest.alloc(512, 512), st: h.guest.status() });

test('descriptor loop in the ring', () => {
  const h = harness();
  const { hdr, data } = parts(h);
  rawChain(h, [
    [hdr, 16, R | N],
    [data, 512, W | N],
    [data, 1, W | N, 1],
  ]);
  kick(h, 0);
  expectBroken(h, 'chain-loop', /chain 0 loops \(more than the ring's 16 descriptors\)/);
});

test('descriptor loop inside an indirect table', () => {
  const h = harness();
  const { hdr, data } = parts(h);
  const t = table(h, [
    [hdr, 16, R | N, 1],
    [data, 512, W | N, 0],
  ]);
  rawChain(h, [[t, 32, I]]);
  kick(h, 0);
  expectBroken(h, 'chain-loop', /indirect table of chain 0 loops/);
});

test('descriptor address outside guest memory', () => {
  const h = harness();
  const { hdr, st } = parts(h);
  rawChain(h, [
    [hdr, 16, R | N],
    [GUEST_BASE + (1 << 20) - 256, 512, W | N],
    [st, 1, W],
  ]);
  kick(h, 0);
  expectBroken(h, 'descriptor-outside-memory', /descriptor at 0x1fff00 \(512 bytes\) outside guest memory/);
});

test('descriptor address below guest memory and one past 2^53', () => {
  const a = harness();
  rawChain(a, [
    [0x1000, 16, R | N],
    [parts(a).st, 1, W],
  ]);
  kick(a, 0);
  expectBroken(a, 'descriptor-outside-memory', /descriptor at 0x1000 \(16 bytes\) outside guest memory/);
  const b = harness();
  const ring = b.rings[0];
  ring.writeDesc(0, 0, 16, R | N, 1);
  // 0xffff_ffff_ffff_fff0 + 16 wraps 64 bits to 0: must not be read as address 0.
  ring.writeDesc(0, Number.MAX_SAFE_INTEGER, 16, R | N, 1);
  b.guest.view(ring.descAddr, 8).setBigUint64(0, 0xffff_ffff_ffff_fff0n, true);
  ring.writeDesc(1, parts(b).st, 1, W, 0);
  ring.pushAvailRaw(0);
  kick(b, 0);
  expectBroken(b, 'descriptor-outside-memory', /an address past 2\^53/);
});

test('next index past the ring size', () => {
  const h = harness();
  const { hdr } = parts(h);
  rawChain(h, [[hdr, 16, R | N, 16]]);
  kick(h, 0);
  expectBroken(h, 'next-out-of-range', /links to descriptor 16, past the ring size 16/);
});

test('avail ring entry past the ring size', () => {
  const h = harness();
  h.rings[0].pushAvailRaw(40);
  kick(h, 0);
  expectBroken(h, 'head-out-of-range', /avail ring names descriptor 40, past the ring size 16/);
});

test('avail index moved by more than the ring size', () => {
  const h = harness();
  h.rings[0].setAvailIdxRaw(17);
  h.dev.kick(0);
  expectBroken(h, 'avail-index-jump', /avail index moved from 0 to 17, more than the ring size 16/);
});

test('indirect table problems: too long, bad length, nested, outside memory, with NEXT, not negotiated', () => {
  const cases: [string, (h: Harness) => void, QueueFault['kind'], RegExp][] = [
    [
      'too long',
      (h) => {
        const t = h.guest.alloc(16 * 200);
        rawChain(h, [[t, 16 * 200, I]]);
      },
      'indirect-too-long',
      /indirect table of 200 descriptors, more than the limit 128/,
    ],
    [
      'bad length',
      (h) => {
        const t = h.guest.alloc(64);
        rawChain(h, [[t, 40, I]]);
      },
      'indirect-bad-length',
      /indirect table of 40 bytes, not a positive multiple of 16/,
    ],
    [
      'empty',
      (h) => {
        const t = h.guest.alloc(64);
        rawChain(h, [[t, 0, I]]);
      },
      'indirect-bad-length',
      /indirect table of 0 bytes/,
    ],
    [
      'nested',
      (h) => {
        const inner = table(h, [[parts(h).st, 1, W, 0]]);
        const t = table(h, [[inner, 16, I, 0]]);
        rawChain(h, [[t, 16, I]]);
      },
      'nested-indirect',
      /indirect descriptor inside an indirect table/,
    ],
    [
      'outside memory',
      (h) => rawChain(h, [[GUEST_BASE + (1 << 20) - 16, 32, I]]),
      'indirect-outside-memory',
      /indirect table at 0x1ffff0 \(32 bytes\) outside guest memory/,
    ],
    [
      'with NEXT',
      (h) => {
        const t = table(h, [[parts(h).st, 1, W, 0]]);
        rawChain(h, [
          [t, 16, I | N],
          [t, 16, W],
        ]);
      },
      'indirect-not-alone',
      /indirect descriptor that is not alone in its chain/,
    ],
    [
      'after a direct one',
      (h) => {
        const p = parts(h);
        const t = table(h, [[p.st, 1, W, 0]]);
        rawChain(h, [
          [p.hdr, 16, R | N],
          [t, 16, I],
        ]);
      },
      'indirect-not-alone',
      /indirect descriptor that is not alone in its chain/,
    ],
  ];
  for (const [name, build, kind, reason] of cases) {
    const h = harness();
    build(h);
    kick(h, 0);
    assert.doesNotThrow(() => expectBroken(h, kind, reason), name);
  }
  const noIndirect = harness({ features: harness().dev.deviceFeatures & ~(1n << 28n) });
  const t = table(noIndirect, [[parts(noIndirect).st, 1, W, 0]]);
  rawChain(noIndirect, [[t, 16, I]]);
  kick(noIndirect, 0);
  expectBroken(noIndirect, 'indirect-not-negotiated', /uses an indirect descriptor, but INDIRECT_DESC was not negotiated/);
});

test('header in a device-writable descriptor', () => {
  const h = harness();
  const { hdr, st } = parts(h);
  rawChain(h, [
    [hdr, 16, W | N],
    [st, 1, W],
  ]);
  kick(h, 0);
  expectBroken(h, 'header-in-writable', /request header of chain 0 is in a device-writable descriptor/);
});

test('header shorter than 16 bytes', () => {
  const h = harness();
  const { hdr, st } = parts(h);
  rawChain(h, [
    [hdr, 8, R | N],
    [hdr + 8, 4, R | N],
    [st, 1, W],
  ]);
  kick(h, 0);
  expectBroken(h, 'header-too-short', /request header of chain 0 is 12 bytes, shorter than 16/);
});

test('missing status byte', () => {
  const h = harness();
  const w = h.guest.header(VIRTIO_BLK_T_OUT, 0);
  rawChain(h, [
    [w, 16, R | N],
    [h.guest.alloc(512), 512, R],
  ]);
  kick(h, 0);
  expectBroken(h, 'missing-status', /chain 0 has no device-writable status byte/);
});

test('wrong direction: read data in a device-readable descriptor, write data in a device-writable one', () => {
  const a = harness();
  const p = parts(a);
  rawChain(a, [
    [p.hdr, 16, R | N],
    [p.data, 512, R | N],
    [p.st, 1, W],
  ]);
  kick(a, 0);
  expectBroken(a, 'read-buffer-readable', /read request 0 has its data buffer in a device-readable descriptor/);

  const b = harness();
  const w = b.guest.header(VIRTIO_BLK_T_OUT, 0);
  rawChain(b, [
    [w, 16, R | N],
    [b.guest.alloc(512), 512, W | N],
    [b.guest.status(), 1, W],
  ]);
  kick(b, 0);
  expectBroken(b, 'write-buffer-writable', /write request 0 has its data buffer in a device-writable descriptor/);
});

test('a device-readable descriptor after a device-writable one', () => {
  const h = harness();
  const p = parts(h);
  rawChain(h, [
    [p.hdr, 16, R | N],
    [p.data, 512, W | N],
    [p.st, 1, R],
  ]);
  kick(h, 0);
  expectBroken(h, 'readable-after-writable', /device-readable descriptor after a device-writable one/);
});

test('a head made available again while still in flight (more requests than descriptors)', () => {
  const h = harness();
  const s = send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  kick(h, 0);
  for (let i = 0; i < 16; i++) h.rings[0].pushAvailRaw(s.head);
  kick(h, 0);
  expectBroken(h, 'too-many-in-flight', /more requests in flight than the ring's 16 descriptors/);
  assert.equal(h.blk.log.filter((r) => r.tag >>> 16 === 0).length, 16, 'what was accepted before the break still runs');
});

test('rings that do not fit guest memory or are misaligned stop the queue at start', () => {
  const cases: [Partial<{ size: number; descAddr: number; availAddr: number; usedAddr: number }>, RegExp][] = [
    [{ size: 12 }, /ring size 12 is not a power of two/],
    [{ size: 65536 }, /ring size 65536 is not a power of two between 1 and 32768/],
    [{ descAddr: 0x1000 }, /descriptor table at 0x1000 \(256 bytes\) is not inside guest memory/],
    [{ usedAddr: GUEST_BASE + (1 << 20) - 8 }, /used ring at 0x1ffff8 .* not inside guest memory/],
    [{ availAddr: GUEST_BASE + 0x801 }, /avail ring at 0x100801 is not 2-byte aligned/],
    [{ descAddr: GUEST_BASE + 0x808 }, /descriptor table at 0x100808 is not 16-byte aligned/],
  ];
  for (const [bad, reason] of cases) {
    const h = harness();
    const r = h.rings[0];
    h.dev.startQueue(0, {
      size: r.size,
      descAddr: r.descAddr,
      availAddr: r.availAddr,
      usedAddr: r.usedAddr,
      lastAvailIdx: 0,
      notify: () => {},
      ...bad,
    });
    assert.doesNotThrow(() => expectBroken(h, 'ring-setup', reason), JSON.stringify(bad));
  }
  const h = harness();
  assert.throws(
    () => h.dev.startQueue(7, { size: 16, descAddr: 0, availAddr: 0, usedAddr: 0, lastAvailIdx: 0, notify: () => {} }),
    /queue 7 does not exist: this disk has 2 queues/,
  );
});

test('a queue started before the memory table stops with a reason', async () => {
  const h = harness();
  await h.dev.reset();
  h.dev.startQueue(0, { size: 16, descAddr: 0, availAddr: 0, usedAddr: 0, lastAvailIdx: 0, notify: () => {} });
  assert.equal(h.dev.fault?.kind, 'memory-not-set');
  assert.match(h.broken[0].reason, /started before the guest memory table was set/);
});

test('requests accepted before a malformed chain in the same batch still complete', () => {
  const h = harness({ ringSize: 32 });
  const good = send(h, 0, VIRTIO_BLK_T_IN, 0, 512);
  h.rings[0].pushAvailRaw(31 + 1);
  kick(h, 0);
  assert.equal(h.blk.submits, 1);
  h.blk.completeAll();
  assert.equal(statusOf(h, good), VIRTIO_BLK_S_OK);
  assert.equal(h.rings[0].usedIdx(), 1);
  assert.deepEqual(h.dev.fault, { kind: 'head-out-of-range', head: 32, size: 32 });
  assert.match(h.broken[0].reason, /descriptor 32, past the ring size 32/);
});
