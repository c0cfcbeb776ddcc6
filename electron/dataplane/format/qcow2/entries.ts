// Table entries of qcow2 (QEMU docs/interop/qcow2.txt, "Cluster mapping" and "Host cluster
// management"): L1 and L2 entries decoded into plain numbers without BigInt on the hot path,
// and refcount entries of every width the spec allows (refcount_order 0..6, 1 to 64 bits).

/** Bit 63 of an L1/L2 entry: the refcount of what it points to is exactly 1 (writable in place). */
export const COPIED_HI = 0x8000_0000;
/** Bit 62 of an L2 entry: a compressed cluster. */
export const COMPRESSED_HI = 0x4000_0000;
/** Bits 9..55: a host offset (the high word keeps bits 32..55). */
const OFFSET_HI_MASK = 0x00ff_ffff;
const OFFSET_LO_MASK = 0xffff_fe00;
/** Reserved bits of a standard L2 entry (1..8 and 56..61) and of an L1 entry (0..8, 56..62). */
const L2_RESERVED_LO = 0x1fe;
const L2_RESERVED_HI = 0x3f00_0000;
const L1_RESERVED_LO = 0x1ff;
const L1_RESERVED_HI = 0x7f00_0000;

export type L2Kind = 'unallocated' | 'zero' | 'normal' | 'compressed';

export interface L2Entry {
  kind: L2Kind;
  /** Host offset (normal: the cluster; zero: a preallocated cluster or 0; compressed: the first byte). */
  offset: number;
  copied: boolean;
  /** Compressed: bytes to read from `offset` (up to the end of its last 512-byte sector). */
  compressedBytes: number;
  /** Reserved bits set or an unaligned host cluster: the image is damaged. */
  invalid: boolean;
}

export function readL2(table: Buffer, index: number, clusterBits: number): L2Entry {
  const hi = table.readUInt32BE(index * 8);
  const lo = table.readUInt32BE(index * 8 + 4);
  const copied = (hi & COPIED_HI) !== 0;
  if (hi & COMPRESSED_HI) {
    // x = 62 - (cluster_bits - 8) bits of offset, then (cluster_bits - 8) bits of additional sectors.
    const e = (BigInt(hi & 0x3fff_ffff) << 32n) | BigInt(lo);
    const x = BigInt(62 - (clusterBits - 8));
    const offset = Number(e & ((1n << x) - 1n));
    const sectors = Number((e >> x) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1;
    return { kind: 'compressed', offset, copied, compressedBytes: sectors * 512 - (offset % 512), invalid: copied };
  }
  const offset = (hi & OFFSET_HI_MASK) * 2 ** 32 + ((lo & OFFSET_LO_MASK) >>> 0);
  const unaligned = offset % 2 ** clusterBits !== 0;
  const invalid = (lo & L2_RESERVED_LO) !== 0 || (hi & L2_RESERVED_HI) !== 0 || unaligned;
  const kind: L2Kind = lo & 1 ? 'zero' : offset === 0 ? 'unallocated' : 'normal';
  return { kind, offset, copied, compressedBytes: 0, invalid };
}

/** The hot path's reading of L2 entry `index`: the host cluster when it is a normal, valid
 *  cluster (COPIED too when `needCopied`); -1 for anything else, which the general path (readL2)
 *  then handles. Makes no object. */
export function normalL2Offset(table: Buffer, index: number, clusterBits: number, needCopied: boolean): number {
  const hi = table.readUInt32BE(index * 8);
  const lo = table.readUInt32BE(index * 8 + 4);
  if (hi & COMPRESSED_HI || lo & (L2_RESERVED_LO | 1) || hi & L2_RESERVED_HI || (needCopied && !(hi & COPIED_HI))) return -1;
  // Clusters are at most 2 MiB, so alignment is a question for the low word alone.
  const low = (lo & OFFSET_LO_MASK) >>> 0;
  if (low & ((1 << clusterBits) - 1)) return -1;
  const offset = (hi & OFFSET_HI_MASK) * 2 ** 32 + low;
  return offset === 0 ? -1 : offset;
}

/** The hot path's reading of an L1 entry: the L2 table's offset when valid (and COPIED when
 *  `needCopied`); 0 otherwise. */
export function l1TableOffset(hi: number, lo: number, needCopied: boolean): number {
  if (lo & L1_RESERVED_LO || hi & L1_RESERVED_HI || (needCopied && !(hi & COPIED_HI))) return 0;
  return (hi & OFFSET_HI_MASK) * 2 ** 32 + ((lo & OFFSET_LO_MASK) >>> 0);
}

/** Writes a standard L2 entry: `offset` (0 or a cluster), COPIED, and the all-zeros flag. */
export function writeL2(table: Buffer, index: number, offset: number, copied: boolean, zero = false): void {
  const hi = Math.floor(offset / 2 ** 32) | (copied ? COPIED_HI : 0);
  table.writeUInt32BE(hi >>> 0, index * 8);
  table.writeUInt32BE(((offset % 2 ** 32) | (zero ? 1 : 0)) >>> 0, index * 8 + 4);
}

/** An L1 entry: the L2 table's offset (0: none), COPIED, and whether reserved bits are set. */
export function readL1(hi: number, lo: number): { offset: number; copied: boolean; invalid: boolean } {
  const offset = (hi & OFFSET_HI_MASK) * 2 ** 32 + ((lo & OFFSET_LO_MASK) >>> 0);
  return { offset, copied: (hi & COPIED_HI) !== 0, invalid: (lo & L1_RESERVED_LO) !== 0 || (hi & L1_RESERVED_HI) !== 0 };
}

export function encodeL1(buf: Buffer, index: number, offset: number, copied: boolean): void {
  buf.writeUInt32BE((Math.floor(offset / 2 ** 32) | (copied ? COPIED_HI : 0)) >>> 0, index * 8);
  buf.writeUInt32BE((offset % 2 ** 32) >>> 0, index * 8 + 4);
}

/** Refcount entry `index` of a refcount block whose entries are 2^order bits wide. */
export function getRefcount(block: Buffer, index: number, order: number): number {
  switch (order) {
    case 3:
      return block[index]!;
    case 4:
      return block.readUInt16BE(index * 2);
    case 5:
      return block.readUInt32BE(index * 4);
    case 6: {
      const v = block.readBigUInt64BE(index * 8);
      return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
    }
    default: {
      // Below a byte: entries are packed from the least significant bit (QEMU's get_refcount_ro0..2).
      const bits = 1 << order;
      const bit = index * bits;
      return (block[bit >> 3]! >> (bit & 7)) & ((1 << bits) - 1);
    }
  }
}

export function setRefcount(block: Buffer, index: number, order: number, value: number): void {
  switch (order) {
    case 3:
      block[index] = value;
      return;
    case 4:
      block.writeUInt16BE(value, index * 2);
      return;
    case 5:
      block.writeUInt32BE(value, index * 4);
      return;
    case 6:
      block.writeBigUInt64BE(BigInt(value), index * 8);
      return;
    default: {
      const bits = 1 << order;
      const bit = index * bits;
      const mask = ((1 << bits) - 1) << (bit & 7);
      block[bit >> 3] = (block[bit >> 3]! & ~mask) | ((value << (bit & 7)) & mask);
    }
  }
}

/** The largest refcount an entry of 2^order bits holds. */
export const maxRefcount = (order: number): number => (order >= 6 ? Number.MAX_SAFE_INTEGER : 2 ** (1 << order) - 1);
