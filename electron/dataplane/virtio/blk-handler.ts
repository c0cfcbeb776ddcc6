// Carries out one virtio-blk request (virtio 1.2, 5.2.6): checks its range against the disk,
// begins it in the block layer with its data segments pointing into guest memory, or completes
// it at once (GET_ID, an empty or refused request). A malformed one comes back as a typed error.
import { BlockOp, WRITE_ZEROES_MAY_UNMAP, type BlockDevice } from '../block/types.js';
import {
  MAX_DWZ_SECTORS,
  MAX_DWZ_SEGMENTS,
  SECTOR,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
} from './blk-config.js';
import { BlkRequest, DwzSegment, Scratch, parseRequest, readDwzSegment, type BlkRequestError } from './blk-request.js';
import type { BlkQueue } from './blk-queue.js';
import { copyToChain, emitSegments } from './chain-bytes.js';

export class BlkRequestHandler {
  /** Features the driver acked (discard and write-zeroes are refused unless acked). */
  acked = 0n;
  /** The guest memory regions, as DataViews and bytes (empty while there is no memory table). */
  views: readonly DataView[] = [];
  bytes: readonly Uint8Array[] = [];
  private readonly scratch = new Scratch();
  private readonly req = new BlkRequest();
  private readonly dwz = new DwzSegment();

  constructor(
    private readonly blk: BlockDevice,
    /** The disk's size the guest was told (grows with VirtioBlkDevice.setCapacity). */
    public capacityBytes: number,
    private readonly lbs: number,
    private readonly serial: Uint8Array,
    private readonly serialLen: number,
  ) {}

  /** Handles one chain: null when it was taken (begun, or completed at once), else why not. */
  handle(q: BlkQueue, head: number): BlkRequestError | null {
    const req = this.req;
    const malformed = parseRequest(q.vq, head, this.views, this.bytes, this.scratch, req);
    if (malformed) return malformed;
    const { dataIn, dataOut } = req;
    switch (req.type) {
      case VIRTIO_BLK_T_IN: {
        if (!this.rangeOk(req.sectorLo, req.sectorHi, dataIn)) return this.finish(q, VIRTIO_BLK_S_IOERR, 1);
        if (dataIn === 0) return this.finish(q, VIRTIO_BLK_S_OK, 1);
        const offset = (req.sectorHi * 0x1_0000_0000 + req.sectorLo) * SECTOR;
        const full = this.begin(q, q.vq.writableBytes, BlockOp.Read, offset, dataIn, 0);
        if (full) return full;
        emitSegments(q.vq, this.blk, 1, 0, dataIn);
        return null;
      }
      case VIRTIO_BLK_T_OUT: {
        if (this.blk.readOnly || !this.rangeOk(req.sectorLo, req.sectorHi, dataOut)) return this.finish(q, VIRTIO_BLK_S_IOERR, 1);
        if (dataOut === 0) return this.finish(q, VIRTIO_BLK_S_OK, 1);
        const offset = (req.sectorHi * 0x1_0000_0000 + req.sectorLo) * SECTOR;
        const full = this.begin(q, 1, BlockOp.Write, offset, dataOut, 0);
        if (full) return full;
        emitSegments(q.vq, this.blk, 0, 16, dataOut);
        return null;
      }
      case VIRTIO_BLK_T_FLUSH:
        return this.begin(q, 1, BlockOp.Flush, 0, 0, 0);
      case VIRTIO_BLK_T_GET_ID: {
        const n = Math.min(dataIn, VIRTIO_BLK_ID_BYTES);
        copyToChain(q.vq, this.bytes, this.serial, this.serialLen, n);
        return this.finish(q, VIRTIO_BLK_S_OK, n + 1);
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES:
        return this.discardOrZeroes(q, req.type === VIRTIO_BLK_T_WRITE_ZEROES, dataOut);
      default:
        return this.finish(q, VIRTIO_BLK_S_UNSUPP, 1);
    }
  }

  private discardOrZeroes(q: BlkQueue, zeroes: boolean, payload: number): BlkRequestError | null {
    const feature = 1n << BigInt(zeroes ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD);
    if ((this.acked & feature) === 0n) return this.finish(q, VIRTIO_BLK_S_UNSUPP, 1);
    if (this.blk.readOnly || payload === 0 || payload % 16 !== 0) return this.finish(q, VIRTIO_BLK_S_IOERR, 1);
    if (payload / 16 > MAX_DWZ_SEGMENTS) return this.finish(q, VIRTIO_BLK_S_UNSUPP, 1);
    const seg = this.dwz;
    readDwzSegment(q.vq, this.bytes, this.scratch, seg);
    // Discard takes no flags; write-zeroes knows only UNMAP (virtio 1.2, 5.2.6.2).
    if (seg.flags & ~(zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0)) return this.finish(q, VIRTIO_BLK_S_UNSUPP, 1);
    if (seg.sectors > MAX_DWZ_SECTORS || !this.rangeOk(seg.sectorLo, seg.sectorHi, seg.sectors * SECTOR)) {
      return this.finish(q, VIRTIO_BLK_S_IOERR, 1);
    }
    if (seg.sectors === 0) return this.finish(q, VIRTIO_BLK_S_OK, 1);
    return this.begin(
      q,
      1,
      zeroes ? BlockOp.WriteZeroes : BlockOp.Discard,
      (seg.sectorHi * 0x1_0000_0000 + seg.sectorLo) * SECTOR,
      seg.sectors * SECTOR,
      zeroes && seg.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ? WRITE_ZEROES_MAY_UNMAP : 0,
    );
  }

  /** A sector range is served only if it lies inside the disk and is aligned to its logical block. */
  private rangeOk(lo: number, hi: number, bytes: number): boolean {
    if (hi >= 0x200000) return false; // sector * 512 would pass 2^62 bytes: far past any disk
    const start = (hi * 0x1_0000_0000 + lo) * SECTOR;
    if (start > this.capacityBytes || bytes > this.capacityBytes - start) return false;
    return start % this.lbs === 0 && bytes % this.lbs === 0;
  }

  /** Takes a slot for the request this.req holds and begins it in the block layer (Read and Write
   *  data segments follow). `length` is its data bytes (Read, Write) or its range (Discard,
   *  WriteZeroes). Null, or why not: the guest has more requests in flight than its ring holds. */
  private begin(q: BlkQueue, usedLen: number, op: BlockOp, offset: number, length: number, flags: number): BlkRequestError | null {
    const r = this.req;
    const slot = q.take(r.head, r.statusRegion, r.statusOffset, usedLen, op, offset, length, flags);
    if (slot < 0) return { kind: 'too-many-in-flight', ringSize: q.vq.size };
    const segmented = op === BlockOp.Read || op === BlockOp.Write;
    this.blk.begin(((q.index << 16) | slot) >>> 0, op, offset, segmented ? 0 : length, flags);
    return null;
  }

  /** Completes the request this.req holds without the block layer. */
  private finish(q: BlkQueue, status: number, usedLen: number): null {
    const r = this.req;
    this.bytes[r.statusRegion]![r.statusOffset] = status;
    q.vq.pushUsed(r.head, usedLen);
    return null;
  }
}
