// The qcow2 header (QEMU docs/interop/qcow2.txt, "Header" and "Header extensions"): parsed and
// checked against the file before anything else is read, so a hostile image is refused with a
// sentence instead of steering later reads. Only the fields Spindle changes are ever written back
// (size, L1, refcount table, feature bits); extensions stay byte for byte as they were.
import { SpindleError } from '../../../shared/errors.js';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
/** Incompatible feature bits. */
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

export const EXT_END = 0;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_NAMES = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

/** Header field offsets the driver rewrites. */
export const OFF = {
  size: 24,
  l1Size: 36,
  l1Offset: 40,
  refTableOffset: 48,
  refTableClusters: 56,
  incompatible: 72,
  autoclear: 88,
} as const;

/** The largest cluster QEMU makes (cluster_bits 21) and the smallest (9). */
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** Bounds from QEMU's block/qcow2.h: a hostile image cannot make us allocate more than these. */
const MAX_L1_BYTES = 32 << 20;
const MAX_REFTABLE_BYTES = 8 << 20;
/** Host offsets are 56 bits (qcow2.txt: bits 9-55). */
export const MAX_HOST_OFFSET = 2 ** 56;

export interface Qcow2Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  clusterSize: number;
  sizeBytes: number;
  cryptMethod: number;
  l1Size: number;
  l1Offset: number;
  refTableOffset: number;
  refTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Extensions in file order (unknown ones too; they are never rewritten). */
  extensions: { type: number; offset: number; data: Buffer }[];
  backingFile: string | null;
  backingFormat: string | null;
}

const u64 = (b: Buffer, at: number): number => {
  const v = b.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`a 64-bit field at byte ${at} (${v}) is beyond any file this host can hold`);
  return Number(v);
};

function bad(what: string): SpindleError {
  return new SpindleError('UNSUPPORTED_FORMAT', `This qcow2 image is damaged or hostile: ${what}.`);
}

/** A refusal naming a feature Spindle does not serve. */
function refuse(path: string, feature: string, hint: string): SpindleError {
  return new SpindleError('UNSUPPORTED_FORMAT', `${path} uses ${feature}, which Spindle's qcow2 driver does not serve. ${hint}`);
}

/**
 * Parses the header in `head` (the file's first cluster or more; at least 4 KiB unless the file
 * is shorter) of the image `path` whose file is `fileSize` bytes. Throws a SpindleError sentence
 * for a damaged header or a feature Spindle does not serve. `writable`: refusals that only matter
 * to a writer (dirty, corrupt) apply.
 */
export function parseHeader(path: string, head: Buffer, fileSize: number, writable: boolean): Qcow2Header {
  const prefix = (e: SpindleError): SpindleError => new SpindleError(e.code, `${path}: ${e.message}`);
  try {
    return parse(path, head, fileSize, writable);
  } catch (err) {
    if (err instanceof SpindleError && err.message.startsWith('This qcow2')) throw prefix(err);
    throw err;
  }
}

function parse(path: string, head: Buffer, fileSize: number, writable: boolean): Qcow2Header {
  if (head.length < 72) throw bad(`the file is ${fileSize} bytes, shorter than a qcow2 header`);
  if (head.readUInt32BE(0) !== QCOW2_MAGIC) throw bad('it lacks the qcow2 magic');
  const version = head.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw refuse(path, `qcow2 version ${version}`, 'Only versions 2 and 3 exist in QEMU.');
  const clusterBits = head.readUInt32BE(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS)
    throw bad(`cluster_bits is ${clusterBits}, outside 9..21 (512 B to 2 MiB clusters)`);
  const clusterSize = 2 ** clusterBits;
  const h: Qcow2Header = {
    version,
    backingFileOffset: u64(head, 8),
    backingFileSize: head.readUInt32BE(16),
    clusterBits,
    clusterSize,
    sizeBytes: u64(head, 24),
    cryptMethod: head.readUInt32BE(32),
    l1Size: head.readUInt32BE(36),
    l1Offset: u64(head, 40),
    refTableOffset: u64(head, 48),
    refTableClusters: head.readUInt32BE(56),
    nbSnapshots: head.readUInt32BE(60),
    snapshotsOffset: u64(head, 64),
    incompatible: 0n,
    compatible: 0n,
    autoclear: 0n,
    refcountOrder: 4,
    headerLength: 72,
    compressionType: 0,
    extensions: [],
    backingFile: null,
    backingFormat: null,
  };
  if (version === 3) {
    if (head.length < 104) throw bad('the version 3 header is cut short');
    h.incompatible = head.readBigUInt64BE(72);
    h.compatible = head.readBigUInt64BE(80);
    h.autoclear = head.readBigUInt64BE(88);
    h.refcountOrder = head.readUInt32BE(96);
    h.headerLength = head.readUInt32BE(100);
    if (h.headerLength < 104 || h.headerLength % 8 !== 0 || h.headerLength > clusterSize || h.headerLength > head.length)
      throw bad(`header_length is ${h.headerLength}`);
    if (h.headerLength > 104) h.compressionType = head[104]!;
  }
  if (h.refcountOrder > 6) throw bad(`refcount_order is ${h.refcountOrder}; refcounts are 1 to 64 bits wide`);
  if (h.cryptMethod !== 0)
    throw refuse(
      path,
      'encryption (AES or LUKS inside qcow2)',
      `Decrypt it first: qemu-img convert --object secret,... -O qcow2 ${path} NEW.qcow2.`,
    );
  const unknown = h.incompatible & ~INCOMPAT_KNOWN;
  if (unknown)
    throw refuse(path, `incompatible feature bits 0x${unknown.toString(16)} unknown to Spindle`, 'A newer QEMU made it; use QEMU for it.');
  if (h.incompatible & INCOMPAT_DATA_FILE)
    throw refuse(path, 'an external data file', `Make a self-contained copy: qemu-img convert -O qcow2 ${path} NEW.qcow2.`);
  if (h.incompatible & INCOMPAT_EXTL2)
    throw refuse(path, 'extended L2 entries (subclusters)', `Make a copy without them: qemu-img convert -O qcow2 ${path} NEW.qcow2.`);
  if (h.incompatible & INCOMPAT_COMPRESSION && h.compressionType !== 0 && h.compressionType !== 1)
    throw refuse(path, `compression type ${h.compressionType}`, 'Only deflate (0) and zstd (1) exist.');
  if (writable && h.incompatible & INCOMPAT_CORRUPT)
    throw refuse(
      path,
      'the corrupt bit (QEMU found its metadata inconsistent)',
      `Repair it with qemu-img check -r all ${path}, or open it read-only.`,
    );
  if (writable && h.incompatible & INCOMPAT_DIRTY)
    throw refuse(
      path,
      'the dirty bit (lazy refcounts left unsaved when it was last closed)',
      `Repair the refcounts with qemu-img check -r all ${path}, or open it read-only.`,
    );
  const l2Entries = clusterSize / 8;
  const maxSize = Math.min(Number.MAX_SAFE_INTEGER, 2 ** 62);
  if (h.sizeBytes > maxSize) throw bad(`the virtual size ${h.sizeBytes} is too large`);
  const l1Needed = Math.ceil(h.sizeBytes / (l2Entries * clusterSize));
  if (h.l1Size < l1Needed) throw bad(`the L1 table has ${h.l1Size} entries, fewer than the ${l1Needed} the size needs`);
  if (h.l1Size * 8 > MAX_L1_BYTES) throw bad(`the L1 table (${h.l1Size} entries) is larger than 32 MiB`);
  checkRange('the L1 table', h.l1Offset, h.l1Size * 8, clusterSize, fileSize);
  if (h.refTableClusters === 0 || h.refTableClusters * clusterSize > MAX_REFTABLE_BYTES)
    throw bad(`the refcount table is ${h.refTableClusters} clusters`);
  checkRange('the refcount table', h.refTableOffset, h.refTableClusters * clusterSize, clusterSize, fileSize);
  if (h.nbSnapshots > 65536) throw bad(`it claims ${h.nbSnapshots} snapshots`);
  if (h.nbSnapshots > 0) checkRange('the snapshot table', h.snapshotsOffset, 1, clusterSize, fileSize);
  readExtensions(path, h, head);
  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize === 0 || h.backingFileSize > 1023) throw bad(`the backing file name is ${h.backingFileSize} bytes`);
    const end = h.backingFileOffset + h.backingFileSize;
    if (end > clusterSize || end > head.length) throw bad('the backing file name lies outside the first cluster');
    h.backingFile = head.toString('utf8', h.backingFileOffset, end);
    if (h.backingFile.includes('\0')) throw bad('the backing file name holds a NUL byte');
  }
  return h;
}

function checkRange(what: string, offset: number, length: number, clusterSize: number, fileSize: number): void {
  if (offset % clusterSize !== 0) throw bad(`${what} at ${offset} is not cluster-aligned`);
  if (offset === 0) throw bad(`${what} overlaps the header`);
  if (offset + length > fileSize) throw bad(`${what} (${length} bytes at ${offset}) lies outside the ${fileSize}-byte file`);
}

function readExtensions(path: string, h: Qcow2Header, head: Buffer): void {
  let at = h.headerLength;
  const limit = Math.min(h.clusterSize, head.length);
  for (let n = 0; ; n++) {
    if (at + 8 > limit) {
      if (h.version === 2) return; // v2 images may carry no end marker when the header fills the space
      throw bad('the header extensions run past the first cluster');
    }
    const type = head.readUInt32BE(at);
    const len = head.readUInt32BE(at + 4);
    if (type === EXT_END) return;
    if (n > 1024 || at + 8 + len > limit) throw bad('a header extension runs past the first cluster');
    const data = head.subarray(at + 8, at + 8 + len);
    h.extensions.push({ type, offset: at, data });
    if (type === EXT_BACKING_FORMAT) h.backingFormat = data.toString('latin1');
    if (type === EXT_CRYPTO) throw refuse(path, 'encryption (LUKS inside qcow2)', 'Decrypt it first with qemu-img convert.');
    if (type === EXT_DATA_FILE) throw refuse(path, 'an external data file', 'Make a self-contained copy with qemu-img convert.');
    at += 8 + Math.ceil(len / 8) * 8;
  }
}

/** Big-endian u64 bytes for a header field. */
export function be64(value: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(value));
  return b;
}

export function be32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  return b;
}
