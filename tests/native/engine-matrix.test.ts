// Every engine × every cache mode, on a regular file on the real disk (O_DIRECT works there) and
// on a loop device: random offsets and sizes (512 B..4 MiB) through several segments with odd
// buffer addresses, read back identical; discard and write-zeroes read back as zeros; flush; EOF.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { AIO_MODES, CACHE_MODES, modeConflict, type AioMode, type CacheMode } from '../../electron/shared/modes.js';
import { SpindleError } from '../../electron/shared/errors.js';
import { attachLoop, makeFile, tempDir } from '../lib/loop.js';
import { Completions, OPS, pattern, rng, segments } from './engine-helpers.js';

const DISK = 48 << 20;
const MAX_IO = 4 << 20;
/** Where read buffer 2 starts inside its SharedArrayBuffer (a registered view at an offset). */
const R_VIEW_AT = 4096 + 24;

async function exercise(path: string, aio: AioMode, cache: CacheMode, seed: number, eof: boolean): Promise<void> {
  const b = await BlockBackend.open(path, { aio, cache, nowait: 'auto', queueDepth: 32 });
  try {
    const random = rng(seed);
    const done = new Completions(b);
    // One big registered buffer per direction (an ArrayBuffer and a SharedArrayBuffer, the latter
    // registered as a view at an offset in it, as guest RAM mapped inside a V8 buffer is);
    // requests use disjoint slices at odd addresses, so O_DIRECT has to bounce them.
    const wmem = new ArrayBuffer(24 << 20);
    const rmem = new SharedArrayBuffer((24 << 20) + R_VIEW_AT);
    b.registerBuffer(1, new Uint8Array(wmem));
    b.registerBuffer(2, new Uint8Array(rmem, R_VIEW_AT));
    const wview = new Uint8Array(wmem);
    const ios: Array<{ off: number; len: number; boff: number }> = [];
    let diskOff = 0, bufOff = 1;
    while (ios.length < 14) {
      const len = Math.max(512, Math.min(MAX_IO, Math.round(2 ** (9 + random() * 13) / 512) * 512));
      diskOff += Math.floor(random() * 8) * 512;
      if (diskOff + len > DISK - (1 << 20) || bufOff + len + 64 > wview.length) break;
      ios.push({ off: diskOff, len, boff: bufOff });
      wview.set(pattern(len, seed * 100 + ios.length), bufOff);
      diskOff += len;
      bufOff += len + 1 + Math.floor(random() * 63);
    }
    const waits: Array<Promise<number>> = [];
    ios.forEach((io, i) => {
      b.begin(i, OPS.Write, io.off);
      for (const [o, l] of segments(random, io.boff, io.len)) b.segment(1, o, l);
      waits.push(done.expect(i));
    });
    b.submit();  // the whole batch in one call
    assert.deepEqual(await Promise.all(waits), ios.map(() => 0), 'writes succeed');
    b.begin(1000, OPS.Flush, 0);
    const flushed = done.expect(1000);
    b.submit();
    assert.equal(await flushed, 0, 'flush completes');

    const rwaits: Array<Promise<number>> = [];
    ios.forEach((io, i) => {
      b.begin(2000 + i, OPS.Read, io.off);
      for (const [o, l] of segments(random, io.boff, io.len)) b.segment(2, o, l);
      rwaits.push(done.expect(2000 + i));
    });
    b.submit();
    assert.deepEqual(await Promise.all(rwaits), ios.map(() => 0), 'reads succeed');
    for (const io of ios) {
      assert.ok(Buffer.from(rmem, R_VIEW_AT + io.boff, io.len).equals(Buffer.from(wmem, io.boff, io.len)), `${aio}/${cache}: ${io.len} bytes at ${io.off} read back identical`);
    }
    assert.ok(new Uint8Array(rmem, 0, R_VIEW_AT).every((x) => x === 0), 'reads into the view never touch the bytes before it');

    // Discard and write-zeroes (with and without may-unmap) read back as zeros.
    const first = ios[0]!, last = ios[ios.length - 1]!;
    await b.discard(first.off, first.len);
    assert.ok((await b.read(first.off, first.len)).every((x) => x === 0), 'discarded range reads as zeros');
    const zlen = Math.min(last.len, 64 << 10);
    await b.writeZeroes(last.off, zlen);
    assert.ok((await b.read(last.off, zlen)).every((x) => x === 0), 'write-zeroes range reads as zeros');
    if (ios.length > 1) {
      const y = ios[1]!;
      await b.writeZeroes(y.off, y.len, 1);
      assert.ok((await b.read(y.off, y.len)).every((x) => x === 0), 'write-zeroes (may unmap) reads as zeros');
    }
    assert.equal(done.duplicates, 0);
    assert.equal(done.unknown, 0);

    if (eof) {
      // A file: reading across its end returns the data, then zeros.
      const tail = pattern(4096, 99);
      await b.write(DISK - 4096, tail);
      const across = await b.read(DISK - 4096, 16384);
      assert.ok(across.subarray(0, 4096).equals(tail), 'data before end of file');
      assert.ok(across.subarray(4096).every((x) => x === 0), 'read past end of file returns zeros');
    }
    const snap = b.counters.snapshot();
    assert.ok(snap.write.ops >= ios.length && snap.read.bytes >= ios.reduce((a, io) => a + io.len, 0));
    assert.equal(snap.inFlight, 0);
  } finally {
    await b.close();
  }
}

const combos = AIO_MODES.flatMap((aio) => CACHE_MODES.map((cache) => [aio, cache] as const));

test('every engine × cache mode on a regular file (real disk)', async (t) => {
  const dir = tempDir('spindle-matrix-', '/var/tmp');
  t.after(() => dir.cleanup());
  let seed = 1;
  for (const [aio, cache] of combos) {
    const path = makeFile(`${dir.path}/${aio}-${cache}.img`, DISK);
    await t.test(`${aio} + ${cache}`, async () => {
      if (modeConflict(aio, cache)) {
        await assert.rejects(BlockBackend.open(path, { aio, cache }), (e: unknown) => e instanceof SpindleError && e.code === 'UNSUPPORTED_MODE' && /O_DIRECT/.test(e.message));
        return;
      }
      await exercise(path, aio, cache, seed++, true);
    });
  }
});

test('every engine × cache mode on a loop device', async (t) => {
  const dir = tempDir('spindle-matrix-loop-', '/var/tmp');
  const loop = attachLoop(makeFile(`${dir.path}/backing.img`, DISK));
  t.after(() => { loop.detach(); dir.cleanup(); });
  let seed = 100;
  for (const [aio, cache] of combos) {
    if (modeConflict(aio, cache)) continue;  // refused before opening: covered on files
    await t.test(`${aio} + ${cache}`, async () => {
      await exercise(loop.device, aio, cache, seed++, false);
    });
  }
});
