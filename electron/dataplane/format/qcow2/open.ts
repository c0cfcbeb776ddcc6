// Opening a qcow2 image: the file through a BlockBackend (the chosen engine and cache mode), the
// header checked, the L1 and refcount tables read and checked against the file, the backing
// chain opened read-only (with the shared image lock), unknown autoclear bits cleared on a
// writable open as QEMU does (docs/interop/qcow2.txt, "autoclear_features").
import { realpathSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { SpindleError } from '../../../shared/errors.js';
import { BlockBackend, type BackendOptions } from '../../block/backend.js';
import { FORMAT_SLOT } from '../../block/stats.js';
import { Lower } from './lower.js';
import { compressionRefusal } from './compressed.js';
import { Qcow2Device, type Backing } from './driver.js';
import { readL1 } from './entries.js';
import { be64, OFF, parseHeader } from './header.js';
import { Qcow2Image } from './image.js';

export interface Qcow2Options extends BackendOptions {
  /** Bytes of L2 tables kept in memory; default: enough for the whole disk, at most 32 MiB (QEMU's bound). */
  l2CacheBytes?: number;
}

/** Opens a backing file: raw or qcow2 by its format name (or its header when the image names none). */
export type BackingOpener = (
  path: string,
  format: 'raw' | 'qcow2' | 'detect',
  options: Qcow2Options,
  chain: string[],
) => Promise<Backing['dev']>;

const DEFAULT_L2_CACHE_MAX = 32 << 20;
const MAX_CHAIN = 64;

export async function openQcow2(
  path: string,
  options: Qcow2Options,
  openBacking: BackingOpener,
  chain: string[] = [],
): Promise<Qcow2Device> {
  const file = await BlockBackend.open(path, { ...options, format: 'qcow2' });
  try {
    return await build(path, file, options, openBacking, chain);
  } catch (err) {
    await file.close().catch(() => undefined);
    throw err;
  }
}

async function build(
  path: string,
  file: BlockBackend,
  options: Qcow2Options,
  openBacking: BackingOpener,
  chain: string[],
): Promise<Qcow2Device> {
  const io = new Lower(file, path);
  const fileSize = file.sizeBytes;
  const writable = !file.readOnly;
  let head = await io.read(0, Math.min(fileSize, 4096));
  if (head.length >= 24) {
    const bits = head.readUInt32BE(20);
    if (bits > 12 && bits <= 21) head = await io.read(0, Math.min(fileSize, 2 ** bits));
  }
  const h = parseHeader(path, head, fileSize, writable);
  const refusal = h.incompatible & 8n ? compressionRefusal(path, h.compressionType) : null;
  if (refusal) throw refusal;
  const cs = h.clusterSize;
  const damaged = (what: string): SpindleError =>
    new SpindleError('UNSUPPORTED_FORMAT', `${path}: this qcow2 image is damaged or hostile: ${what}.`);
  // Metadata clusters must not overlap one another (QEMU's overlap checks): a write to one would
  // overwrite another.
  const meta = new Map<number, string>([[0, 'the header']]);
  const claim = (offset: number, clusters: number, what: string): void => {
    for (let c = offset / cs; c < offset / cs + clusters; c++) {
      const other = meta.get(c);
      if (other) throw damaged(`${what} overlaps ${other}`);
      meta.set(c, what);
    }
  };
  claim(h.l1Offset, Math.ceil((h.l1Size * 8) / cs), 'the L1 table');
  claim(h.refTableOffset, h.refTableClusters, 'the refcount table');
  const l1 = await io.read(h.l1Offset, h.l1Size * 8);
  const refTable = await io.read(h.refTableOffset, h.refTableClusters * cs);
  for (let i = 0; i < refTable.length / 8; i++) {
    const off = refTable.readUInt32BE(i * 8) * 2 ** 32 + refTable.readUInt32BE(i * 8 + 4);
    if (i === 0 && !off) throw damaged('no refcount block describes the header');
    if (off && (off % cs || off < cs || off + cs > fileSize)) throw damaged(`refcount table entry ${i} points to ${off}`);
    if (off) claim(off, 1, `refcount block ${i}`);
  }
  for (let i = 0; i < h.l1Size; i++) {
    const e = readL1(l1.readUInt32BE(i * 8), l1.readUInt32BE(i * 8 + 4));
    if (!e.offset) continue;
    if (e.invalid || e.offset % cs || e.offset < cs || e.offset + cs > fileSize) throw damaged(`L1 entry ${i} points to ${e.offset}`);
    // A table shared with a snapshot (no COPIED) may appear twice only through snapshots' L1s, not here.
    claim(e.offset, 1, `the L2 table of L1 entry ${i}`);
  }
  let backing: Backing | null = null;
  if (h.backingFile !== null) backing = await openChain(path, h.backingFile, h.backingFormat, options, openBacking, chain);
  try {
    if (writable && h.version === 3 && h.autoclear !== 0n) {
      // Bitmaps and the like that Spindle does not keep up to date: say so to the next reader.
      await io.write(OFF.autoclear, be64(0));
      await io.flush();
      h.autoclear = 0n;
    }
    const l2Entries = cs / 8;
    const whole = Math.ceil(h.sizeBytes / (cs * l2Entries)) * cs;
    const image = new Qcow2Image(path, io, h, l1, refTable, fileSize, {
      l2CacheBytes: options.l2CacheBytes ?? Math.min(Math.max(whole, 1 << 20), DEFAULT_L2_CACHE_MAX),
      onStall: () => (file.counters.slots[FORMAT_SLOT.allocationStalls]! += 1),
    });
    return new Qcow2Device(file, io, image, backing);
  } catch (err) {
    await backing?.dev.close().catch(() => undefined);
    throw err;
  }
}

async function openChain(
  path: string,
  name: string,
  format: string | null,
  options: Qcow2Options,
  openBacking: BackingOpener,
  chain: string[],
): Promise<Backing> {
  const target = isAbsolute(name) ? name : resolve(dirname(path), name);
  let real: string;
  try {
    real = realpathSync(target);
  } catch {
    throw new SpindleError('NOT_FOUND', `${path} names the backing file ${name}, which does not exist (looked for ${target}).`);
  }
  const seen = [...chain, realpathSync(path)];
  if (seen.includes(real)) throw new SpindleError('UNSUPPORTED_FORMAT', `${path}'s backing chain loops back to ${real}.`);
  if (seen.length >= MAX_CHAIN) throw new SpindleError('UNSUPPORTED_FORMAT', `${path}'s backing chain is deeper than ${MAX_CHAIN} images.`);
  if (format !== null && format !== 'raw' && format !== 'qcow2')
    throw new SpindleError(
      'UNSUPPORTED_FORMAT',
      `${path}'s backing file ${name} is a ${format} image; Spindle reads raw and qcow2 backing files only.`,
    );
  // A backing file has counters and locks of its own (the shared, read form of QEMU's image lock).
  const { counters: _counters, lock: _lock, ...rest } = options;
  const dev = await openBacking(target, (format as 'raw' | 'qcow2' | null) ?? 'detect', { ...rest, readOnly: true }, seen);
  const io = new Lower(dev, target);
  return { dev, io, sizeBytes: dev.sizeBytes, path: target };
}
