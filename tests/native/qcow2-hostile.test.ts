// Hostile qcow2 images are input too: a header, L1/L2 tables and refcounts fuzzed (seeded; the
// seed is printed), offsets outside the file, loops, huge sizes, overlapping metadata, backing
// names pointing anywhere, and the features Spindle refuses. Each gives a SpindleError sentence
// or reads and writes that fail with EIO; nothing throws anything else, nothing reads past the
// end of the image, and the process goes on.
import { test } from '../lib/test.js';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { SpindleError } from '../../electron/shared/errors.js';
import { openFormat } from '../../electron/dataplane/format/open-format.js';
import { Qcow2Device } from '../../electron/dataplane/format/qcow2/driver.js';
import { tempDir } from '../lib/loop.js';
import { qemuImg, seeded } from '../lib/qcow2.js';

const SEED = Number(process.env.SPINDLE_QCOW2_SEED ?? Date.now() % 1_000_000);
const MiB = 1 << 20;

/** Opens, reads everything, writes a little, closes: returns what went wrong as a sentence, or null. */
async function exercise(path: string, readOnly = false): Promise<string | null> {
  let d: Qcow2Device;
  try {
    d = (await openFormat(path, 'qcow2', { aio: 'threads', cache: 'writeback', readOnly })) as Qcow2Device;
  } catch (err) {
    if (!(err instanceof SpindleError)) throw err;
    assert.ok(err.message.length > 20 && /[.)]$/.test(err.message), `a sentence: ${err.message}`);
    return err.message;
  }
  let problem: string | null = null;
  const fileSize = statSync(path).size;
  try {
    const size = Math.min(d.sizeBytes, 8 * MiB);
    for (let off = 0; off < size; off += 256 * 1024) {
      await d.read(off, Math.min(256 * 1024, size - off)).catch((err: unknown) => {
        if (!(err instanceof SpindleError)) throw err;
        problem = err.message;
      });
    }
    if (!readOnly) {
      await d.write(65536 + 512, Buffer.alloc(4096, 7)).catch((err: unknown) => {
        if (!(err instanceof SpindleError)) throw err;
        problem = err.message;
      });
      await d.flush().catch((err: unknown) => {
        if (!(err instanceof SpindleError)) throw err;
        problem = err.message;
      });
    }
  } finally {
    await d.close().catch((err: unknown) => {
      if (!(err instanceof SpindleError)) throw err;
    });
  }
  // Reads never grew the file; writes grow it only by what they allocate (bounded).
  assert.ok(statSync(path).size <= fileSize + 80 * MiB, 'the file did not balloon');
  return problem;
}

function makeBase(dir: string, opts = 'cluster_size=65536'): string {
  const img = join(dir, 'base.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, img, String(16 * MiB));
  spawnSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 4M 256k', img]);
  return img;
}

function patch(src: string, dst: string, edits: [number, Buffer][]): string {
  const b = readFileSync(src);
  for (const [at, bytes] of edits) bytes.copy(b, at);
  writeFileSync(dst, b);
  return dst;
}
const u64 = (v: number | bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
};
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

test('crafted headers and tables are refused with a sentence naming what is wrong', async (t) => {
  const dir = tempDir('spindle-qcow2-hostile-');
  t.after(() => dir.cleanup());
  const base = makeBase(dir.path);
  const h = readFileSync(base);
  const l1 = Number(h.readBigUInt64BE(40));
  const rt = Number(h.readBigUInt64BE(48));
  const cases: [string, [number, Buffer][], RegExp][] = [
    ['version 4', [[4, u32(4)]], /qcow2 version 4/],
    ['cluster_bits 30', [[20, u32(30)]], /cluster_bits is 30/],
    ['L1 table past the end', [[40, u64(1n << 40n)]], /L1 table .* outside/],
    ['L1 table on the header', [[40, u64(0)]], /overlaps the header/],
    ['huge L1', [[36, u32(0x7fffffff)]], /larger than 32 MiB|outside/],
    ['huge virtual size', [[24, u64(1n << 62n)]], /virtual size|fewer than|beyond any file/],
    ['refcount table past the end', [[48, u64(1n << 40n)]], /refcount table .* outside/],
    ['huge refcount table', [[56, u32(0xffffff)]], /refcount table is/],
    ['unaligned L1 entry', [[l1, u64(0x8000000000000000n | 0x10200n)]], /L1 entry 0/],
    ['L1 entry past the end', [[l1, u64(0x8000000000000000n | (1n << 40n))]], /L1 entry 0 points/],
    ['refcount block past the end', [[rt, u64(1n << 40n)]], /refcount table entry 0/],
    ['no refcount block for the header', [[rt, u64(0)]], /no refcount block/],
    ['refcount block on the L1 table', [[rt, u64(l1)]], /refcount block 0 overlaps the L1 table/],
    ['L2 table on the refcount table', [[l1, u64(0x8000000000000000n | BigInt(rt))]], /L2 table of L1 entry 0 overlaps the refcount table/],
    ['L1 table over the refcount table', [[40, u64(rt)]], /overlaps the L1 table/],
    ['encryption', [[32, u32(1)]], /encryption/],
    ['unknown incompatible bit', [[72, u64(1n << 20n)]], /incompatible feature bits 0x100000/],
    ['external data file bit', [[72, u64(4)]], /external data file/],
    ['extended L2 bit', [[72, u64(16)]], /extended L2/],
    ['refcount_order 7', [[96, u32(7)]], /refcount_order is 7/],
    ['header_length odd', [[100, u32(105)]], /header_length/],
    ['backing name of 4000 bytes', [[8, u64(512)], [16, u32(4000)]], /backing file name is 4000 bytes/],
  ];
  for (const [label, edits, why] of cases) {
    const img = patch(base, join(dir.path, 'x.qcow2'), edits);
    const problem = await exercise(img);
    assert.ok(problem, `${label}: accepted`);
    assert.match(problem, why, label);
  }
});

test('dirty and corrupt bits: read-only opens, writable ones are refused with the repair command', async (t) => {
  const dir = tempDir('spindle-qcow2-hostile-');
  t.after(() => dir.cleanup());
  const base = makeBase(dir.path);
  for (const [bit, name] of [[1n, 'dirty'], [2n, 'corrupt']] as const) {
    const img = patch(base, join(dir.path, `${name}.qcow2`), [[72, u64(bit)]]);
    assert.match((await exercise(img)) ?? '', new RegExp(`the ${name} bit.*qemu-img check -r all`));
    assert.equal(await exercise(img, true), null, `${name}: read-only serves it`);
  }
});

test('backing names pointing anywhere: missing files, loops and foreign formats are refused', async (t) => {
  const dir = tempDir('spindle-qcow2-hostile-');
  t.after(() => dir.cleanup());
  const mk = (name: string, backing: string, fmt?: string): string => {
    const p = join(dir.path, name);
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', backing, ...(fmt ? ['-F', fmt] : []), p, String(16 * MiB));
    return p;
  };
  assert.match((await exercise(mk('missing.qcow2', 'nowhere/none.raw', 'raw'))) ?? '', /backing file nowhere\/none.raw, which does not exist/);
  mk('loop-a.qcow2', 'loop-b.qcow2', 'qcow2');
  const b = mk('loop-b.qcow2', 'loop-a.qcow2', 'qcow2');
  assert.match((await exercise(b)) ?? '', /backing chain loops back/);
  assert.match((await exercise(mk('self.qcow2', 'self.qcow2', 'qcow2'))) ?? '', /backing chain loops back/);
  qemuImg('create', '-q', '-f', 'vdi', join(dir.path, 'v.vdi'), String(16 * MiB));
  assert.match((await exercise(mk('vdi.qcow2', 'v.vdi', 'vdi'))) ?? '', /is a vdi image; Spindle reads raw and qcow2 backing files only/);
});

test('features Spindle refuses, in images qemu-img made: extended L2, external data file, zstd without zstd in zlib', async (t) => {
  const dir = tempDir('spindle-qcow2-hostile-');
  t.after(() => dir.cleanup());
  const ext = join(dir.path, 'ext.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', ext, String(16 * MiB));
  assert.match((await exercise(ext)) ?? '', /extended L2 entries \(subclusters\)/);
  const df = join(dir.path, 'df.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${join(dir.path, 'df.raw')}`, df, String(16 * MiB));
  assert.match((await exercise(df)) ?? '', /external data file/);
  const z = join(dir.path, 'z.qcow2');
  const made = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd', z, String(16 * MiB)]);
  assert.equal(made.status, 0, 'this qemu-img makes zstd images');
  const zlib = await import('node:zlib');
  if (!('zstdDecompress' in zlib)) assert.match((await exercise(z)) ?? '', /zstd-compressed clusters.*has no zstd/);
  else assert.equal(await exercise(z), null);
});

test(`fuzzed metadata (seeded): a sentence or EIO, never a crash or a read past the image`, async (t) => {
  const dir = tempDir('spindle-qcow2-hostile-');
  t.after(() => dir.cleanup());
  t.diagnostic(`SPINDLE_QCOW2_SEED=${SEED}`);
  const base = makeBase(dir.path, 'cluster_size=4096');
  const src = readFileSync(base);
  const l1 = Number(src.readBigUInt64BE(40));
  const rt = Number(src.readBigUInt64BE(48));
  const rb = Number(src.readBigUInt64BE(rt));
  const l2 = Number(src.readBigUInt64BE(l1) & 0x00ff_ffff_ffff_fe00n);
  const regions: [string, number, number][] = [
    ['header', 0, 112],
    ['L1', l1, 64],
    ['L2', l2, 4096],
    ['refcount table', rt, 64],
    ['refcount block', rb, 4096],
  ];
  const r = seeded(SEED);
  let refused = 0;
  let failedIo = 0;
  let served = 0;
  for (let round = 0; round < 60; round++) {
    const b = Buffer.from(src);
    const [, at, len] = regions[round % regions.length]!;
    const edits = 1 + r.next(4);
    for (let e = 0; e < edits; e++) {
      const pos = at + r.next(len);
      // Bytes from elsewhere in the file (offsets that look plausible), or random, or all-ones.
      const kind = r.next(3);
      if (kind === 0) b.writeBigUInt64BE(BigInt(r.next(b.length)) | (1n << 63n), Math.min(pos - (pos % 8), b.length - 8));
      else if (kind === 1) b[pos] = r.next(256);
      else b.fill(0xff, pos, Math.min(pos + 8, b.length));
    }
    const img = join(dir.path, `f${round}.qcow2`);
    writeFileSync(img, b);
    const problem = await exercise(img);
    if (problem === null) served++;
    else if (/damaged|hostile|refus|outside|unknown|version|cluster_bits|refcount|header/i.test(problem)) refused++;
    else failedIo++;
    const ro = join(dir.path, `f${round}-ro.qcow2`);
    copyFileSync(img, ro);
  }
  t.diagnostic(`60 fuzzed images: ${refused} refused or failed with a sentence about the metadata, ${failedIo} failed otherwise, ${served} served`);
  assert.ok(refused > 0, 'some were refused');
});

test('a disk given as raw is never probed: a raw image whose guest wrote a qcow2 header stays raw (CVE-2008-2004)', async (t) => {
  const dir = tempDir('spindle-qcow2-hostile-');
  t.after(() => dir.cleanup());
  const img = makeBase(dir.path);
  const size = statSync(img).size;
  const raw = await openFormat(img, 'raw', { aio: 'threads', cache: 'writeback' });
  try {
    assert.ok(!(raw instanceof Qcow2Device), 'served through the qcow2 driver');
    assert.equal(raw.sizeBytes, size, 'the guest sees the file as it is');
    assert.equal((await raw.read(0, 4)).toString('latin1'), 'QFI\xfb', 'the header bytes are the guest data');
  } finally {
    await raw.close();
  }
  // Without a format (callers that predate it) such a file is still refused, as before.
  await assert.rejects(openFormat(img, undefined, { aio: 'threads', cache: 'writeback' }), /is a qcow2 image; Spindle serves it only when told/);
});
