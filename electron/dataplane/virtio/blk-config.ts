// virtio-blk's numbers (virtio 1.2, 5.2): feature bits, request types and statuses, and the
// device configuration space, struct virtio_blk_config (5.2.4), laid out by named offsets.

export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_TOPOLOGY = 10;
export const VIRTIO_BLK_F_CONFIG_WCE = 11;
export const VIRTIO_BLK_F_MQ = 12;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
export const VIRTIO_RING_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;

export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;
export const VIRTIO_BLK_ID_BYTES = 20;

export const SECTOR = 512;
/** One discard / write-zeroes range at most per request (as QEMU): Linux splits larger ones. */
export const MAX_DWZ_SEGMENTS = 1;
export const MAX_DWZ_SECTORS = 65536;

/** Byte offsets of the fields of struct virtio_blk_config (virtio 1.2, 5.2.4). */
export const BLK_CONFIG = {
  capacity: 0, // le64, in 512-byte sectors
  sizeMax: 8, // le32
  segMax: 12, // le32
  geometry: 16, // cylinders le16, heads u8, sectors u8: not offered, left zero
  blkSize: 20, // le32
  physicalBlockExp: 24, // u8, topology
  alignmentOffset: 25, // u8
  minIoSize: 26, // le16
  optIoSize: 28, // le32
  writeback: 32, // u8
  numQueues: 34, // le16 (33 is unused0)
  maxDiscardSectors: 36, // le32
  maxDiscardSeg: 40, // le32
  discardSectorAlignment: 44, // le32
  maxWriteZeroesSectors: 48, // le32
  maxWriteZeroesSeg: 52, // le32
  writeZeroesMayUnmap: 56, // u8, then unused1[3]
} as const;

/** Bytes of struct virtio_blk_config up to write_zeroes_may_unmap and its padding (no secure erase). */
export const VIRTIO_BLK_CONFIG_SIZE = 60;
export const CONFIG_WCE_OFFSET = BLK_CONFIG.writeback;

/** What the configuration space says about one disk. */
export interface BlkConfigValues {
  capacityBytes: number;
  sizeMax: number;
  segMax: number;
  logicalBlockSize: number;
  physicalBlockSize: number;
  writeCache: boolean;
  numQueues: number;
  supportsDiscard: boolean;
}

/** The configuration space as bytes. */
export function encodeBlkConfig(v: BlkConfigValues): Uint8Array {
  const cfg = new DataView(new ArrayBuffer(VIRTIO_BLK_CONFIG_SIZE));
  const c = BLK_CONFIG;
  cfg.setBigUint64(c.capacity, BigInt(v.capacityBytes / SECTOR), true);
  cfg.setUint32(c.sizeMax, v.sizeMax, true);
  cfg.setUint32(c.segMax, v.segMax, true);
  cfg.setUint32(c.blkSize, v.logicalBlockSize, true);
  const ratio = Math.max(1, Math.floor(v.physicalBlockSize / v.logicalBlockSize));
  cfg.setUint8(c.physicalBlockExp, Math.floor(Math.log2(ratio)));
  cfg.setUint8(c.alignmentOffset, 0);
  cfg.setUint16(c.minIoSize, Math.min(ratio, 0xffff), true);
  cfg.setUint32(c.optIoSize, 0, true);
  cfg.setUint8(c.writeback, v.writeCache ? 1 : 0);
  cfg.setUint16(c.numQueues, v.numQueues, true);
  cfg.setUint32(c.maxDiscardSectors, MAX_DWZ_SECTORS, true);
  cfg.setUint32(c.maxDiscardSeg, MAX_DWZ_SEGMENTS, true);
  cfg.setUint32(c.discardSectorAlignment, v.logicalBlockSize / SECTOR, true);
  cfg.setUint32(c.maxWriteZeroesSectors, MAX_DWZ_SECTORS, true);
  cfg.setUint32(c.maxWriteZeroesSeg, MAX_DWZ_SEGMENTS, true);
  cfg.setUint8(c.writeZeroesMayUnmap, v.supportsDiscard ? 1 : 0);
  return new Uint8Array(cfg.buffer);
}

/** `length` bytes of `config` from `offset`; bytes outside it read as zero. */
export function configWindow(config: Uint8Array, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(Math.max(0, length));
  for (let i = 0; i < out.length; i++) {
    const o = offset + i;
    if (o >= 0 && o < config.length) out[i] = config[o]!;
  }
  return out;
}
