// Requests whose offset or length is not a multiple of the logical block size, where the kernel
// needs whole blocks (O_DIRECT data, BLKZEROOUT, BLKDISCARD): done on the covering blocks, writes
// by read-modify-write serialised against overlapping writes. Every engine, on an O_DIRECT file and
// on a loop device with 4096-byte sectors.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { AIO_MODES } from '../../electron/shared/modes.js';
import { AioEngine, SubmissionQueue } from '../../electron/dataplane/block/engine.js';
import { attachLoop, makeFile, tempDir } from '../lib/loop.js';
import { OPS, pattern, rng } from './engine-helpers.js';
import { waitFor } from '../lib/wait.js';

const REGION = 256 << 10;

/** Cuts [0, length) into disjoint pieces of 1..9000 bytes; about a third of the cuts fall on block boundaries. */
function pieces(random: () => number, length: number, block: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let at = 0; at < length;) {
    let end = Math.min(length, at + 1 + Math.floor(random() * 9000));
    if (random() < 0.33) end = Math.min(length, Math.ceil(end / block) * block);
    out.push([at, end - at]);
    at = end;
  }
  return out;
}

function shuffle<T>(random: () => number, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/**
 * Rounds of many writes in flight at once over disjoint byte ranges that share blocks, then reads
 * at random byte ranges. Disjoint bytes make the expected content independent of completion order;
 * an unserialised read-modify-write would lose a neighbour's bytes.
 */
async function exercise(b: BlockBackend, seed: number, base: number): Promise<void> {
  const random = rng(seed);
  const shadow = await b.read(base, REGION);
  for (let round = 0; round < 3; round++) {
    const writes = shuffle(random, pieces(random, REGION, b.logicalBlockSize).filter(() => random() < 0.7));
    await Promise.all(writes.map(([off, len], i) => {
      const data = pattern(len, seed * 1000 + round * 100 + i);
      data.copy(shadow, off);
      return b.write(base + off, data);
    }));
    const reads = Array.from({ length: 64 }, () => {
      const off = Math.floor(random() * (REGION - 1));
      return [off, 1 + Math.floor(random() * Math.min(20000, REGION - off - 1))] as const;
    });
    const got = await Promise.all(reads.map(([off, len]) => b.read(base + off, len)));
    reads.forEach(([off, len], i) => assert.ok(got[i]!.equals(shadow.subarray(off, off + len)), `round ${round}: read of ${len} at ${base + off}`));
    assert.ok((await b.read(base, REGION)).equals(shadow), `round ${round}: the whole region reads back`);
  }
}

for (const aio of AIO_MODES) {
  test(`${aio}: unaligned reads and writes on an O_DIRECT file and a 4096-byte-sector loop device read back exactly`, async (t) => {
    const dir = tempDir('spindle-unaligned-', '/var/tmp');
    t.after(() => dir.cleanup());
    const file = makeFile(`${dir.path}/disk.img`, 4 << 20, { written: true });
    const loop = attachLoop(makeFile(`${dir.path}/backing.img`, 4 << 20, { written: true }), { sectorSize: 4096 });
    t.after(() => loop.detach());
    for (const [label, path] of [['file', file], ['loop', loop.device]] as const) {
      for (const cache of ['none', 'directsync'] as const) {
        const b = await BlockBackend.open(path, { aio, cache, nowait: 'off' });
        try {
          if (label === 'loop') assert.equal(b.logicalBlockSize, 4096);
          await exercise(b, label.length * 7 + cache.length, 100_003);
          const c = b.counters.snapshot();
          assert.equal(c.read.errors + c.write.errors, 0, `${label}/${cache}: no request failed`);
        } finally {
          await b.close();
        }
      }
    }
  });

  test(`${aio}: unaligned write-zeroes and discard on a 4096-byte-sector loop device touch only their bytes`, async (t) => {
    const dir = tempDir('spindle-unaligned-', '/var/tmp');
    t.after(() => dir.cleanup());
    const loop = attachLoop(makeFile(`${dir.path}/backing.img`, 1 << 20, { written: true }), { sectorSize: 4096 });
    t.after(() => loop.detach());
    const b = await BlockBackend.open(loop.device, { aio, cache: 'none', nowait: 'off' });
    try {
      const shadow = pattern(1 << 20, 99);
      await b.write(0, shadow);
      // Inside one block, across one boundary, and whole blocks with partial ends, all in flight at once.
      const zeroes: Array<[number, number]> = [[100, 200], [4000, 200], [9000, 3 * 4096 + 77], [65536 + 4096, 8192 + 1]];
      await Promise.all(zeroes.map(([off, len]) => b.writeZeroes(off, len)));
      for (const [off, len] of zeroes) shadow.fill(0, off, off + len);
      assert.ok((await b.read(0, 1 << 20)).equals(shadow), 'zeroed exactly the ranges asked for');

      // Discard keeps the partial blocks at its ends and may drop the whole ones between.
      const [off, len] = [200_000 + 123, 5 * 4096 + 900];
      await b.discard(off, len);
      const after = await b.read(0, 1 << 20);
      assert.ok(after.subarray(0, off).equals(shadow.subarray(0, off)), 'before the discard: intact');
      assert.ok(after.subarray(off + len).equals(shadow.subarray(off + len)), 'after the discard: intact');
      const firstWhole = Math.ceil(off / 4096) * 4096, lastWhole = Math.floor((off + len) / 4096) * 4096;
      assert.ok(after.subarray(off, firstWhole).equals(shadow.subarray(off, firstWhole)), 'partial first block kept');
      assert.ok(after.subarray(lastWhole, off + len).equals(shadow.subarray(lastWhole, off + len)), 'partial last block kept');
      await b.discard(4096 + 1, 100);  // no whole block inside: nothing to do, still succeeds
    } finally {
      await b.close();
    }
  });

  test(`${aio}: an unaligned write at the end of an O_DIRECT file keeps the file's size; reads past it return zeros`, async (t) => {
    const dir = tempDir('spindle-unaligned-', '/var/tmp');
    t.after(() => dir.cleanup());
    const size = (1 << 20) + 512;  // not a multiple of the 4096-byte alignment used here
    const path = makeFile(`${dir.path}/disk.img`, size, { written: true });
    const fd = openSync(path, constants.O_RDWR | constants.O_DIRECT);
    const results = new Map<number, number>();
    const e = new AioEngine({
      kind: aio, fd, isBlock: false, alignment: 4096,
      onComplete: (tags, res, n) => {
        for (let i = 0; i < n; i++) results.set(tags[i]!, res[i]!);
      },
    });
    const q = new SubmissionQueue();
    const run = async (tags: number[]): Promise<number[]> => {
      e.submit(q);
      await waitFor(() => tags.every((tag) => results.has(tag)), { timeoutMs: 60_000, what: `${aio}: completions of tags ${tags.join(', ')}` });
      return tags.map((tag) => results.get(tag)!);
    };
    try {
      const data = pattern(300, 5);
      const mem = new Uint8Array(8192);
      mem.set(data, 1);
      e.registerBuffer(1, mem);
      q.begin(1, OPS.Write, size - 400);
      q.segment(1, 1, 300);
      assert.deepEqual(await run([1]), [0]);
      assert.equal(fstatSync(fd).size, size, 'the file did not grow to the covering block');

      const out = new Uint8Array(8192).fill(0xee);
      e.registerBuffer(2, out);
      q.begin(2, OPS.Read, size - 400);
      q.segment(2, 3, 1000);  // 600 bytes past the end of the file
      assert.deepEqual(await run([2]), [0]);
      assert.ok(Buffer.from(out.subarray(3, 303)).equals(data), 'the written bytes');
      assert.ok(out.subarray(403, 1003).every((v) => v === 0), 'past the end: zeros');
      assert.ok(out.subarray(303, 403).every((v) => v === 0xa5), 'the untouched tail of the file');
      assert.equal(fstatSync(fd).size, size);
    } finally {
      await e.close();
      closeSync(fd);
    }
  });
}
