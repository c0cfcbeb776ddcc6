// Reading a virtio-blk request (virtio 1.2, 5.2.6) from the chain SplitVirtqueue last walked: its
// header, where its status byte is, and its data sizes, or why the chain is not a request (one
// kind per malformed case). Nothing is allocated for a well-formed chain: the result goes into a
// BlkRequest the caller reuses.
import { copyFromChain } from './chain-bytes.js';
import { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from './blk-config.js';
import type { SplitVirtqueue } from './split-virtqueue.js';

/** struct virtio_blk_req's header: le32 type, le32 reserved, le64 sector. */
const HEADER_BYTES = 16;
/** A discard / write-zeroes segment: le64 sector, le32 num_sectors, le32 flags. */
const DWZ_SEGMENT_BYTES = 16;

export type BlkRequestError =
  | { kind: 'header-in-writable'; head: number }
  | { kind: 'header-too-short'; head: number; bytes: number }
  | { kind: 'missing-status'; head: number }
  | { kind: 'read-buffer-readable'; head: number }
  | { kind: 'write-buffer-writable'; head: number }
  /** The guest has more requests in flight than its ring has descriptors. */
  | { kind: 'too-many-in-flight'; ringSize: number };

/** The sentence (without its final full stop) saying what is wrong with the request. */
export function describeBlkRequestError(e: BlkRequestError): string {
  switch (e.kind) {
    case 'header-in-writable':
      return `the request header of chain ${e.head} is in a device-writable descriptor`;
    case 'header-too-short':
      return `the request header of chain ${e.head} is ${e.bytes} bytes, shorter than ${HEADER_BYTES}`;
    case 'missing-status':
      return `chain ${e.head} has no device-writable status byte`;
    case 'read-buffer-readable':
      return `read request ${e.head} has its data buffer in a device-readable descriptor`;
    case 'write-buffer-writable':
      return `write request ${e.head} has its data buffer in a device-writable descriptor`;
    case 'too-many-in-flight':
      return `the guest has more requests in flight than the ring's ${e.ringSize} descriptors`;
  }
}

/** 16 bytes to gather a header or segment that spans descriptors, reused. */
export class Scratch {
  readonly bytes = new Uint8Array(16);
  readonly view = new DataView(this.bytes.buffer);
}

/** One request as read from its chain. */
export class BlkRequest {
  head = 0;
  type = 0;
  /** The header's sector, as two u32 halves (a double holds only 53 bits). */
  sectorLo = 0;
  sectorHi = 0;
  /** Where the status byte is: a guest memory region and an offset in it. */
  statusRegion = 0;
  statusOffset = 0;
  /** Device-readable bytes after the header (write data, discard segments). */
  dataOut = 0;
  /** Device-writable bytes before the status byte (read data, the GET_ID string). */
  dataIn = 0;
}

/** Reads the chain `vq` last walked into `out`; null when it is a request, else why not. */
export function parseRequest(
  vq: SplitVirtqueue,
  head: number,
  views: readonly DataView[],
  bytes: readonly Uint8Array[],
  scratch: Scratch,
  out: BlkRequest,
): BlkRequestError | null {
  if (vq.readableBytes < HEADER_BYTES) {
    return vq.readableBytes === 0 && vq.writableBytes > 0
      ? { kind: 'header-in-writable', head }
      : { kind: 'header-too-short', head, bytes: vq.readableBytes };
  }
  if (vq.writableBytes === 0) return { kind: 'missing-status', head };
  out.head = head;
  // The status byte is the last writable byte; writable parts come last in the chain.
  const last = vq.segCount - 1;
  out.statusRegion = vq.segRegion[last]!;
  out.statusOffset = vq.segOffset[last]! + vq.segLen[last]! - 1;
  if (vq.segLen[0]! >= HEADER_BYTES && vq.segWritable[0] === 0) {
    const v = views[vq.segRegion[0]!]!;
    const o = vq.segOffset[0]!;
    out.type = v.getUint32(o, true);
    out.sectorLo = v.getUint32(o + 8, true);
    out.sectorHi = v.getUint32(o + 12, true);
  } else {
    copyFromChain(vq, bytes, 0, HEADER_BYTES, scratch.bytes);
    const s = scratch.view;
    out.type = s.getUint32(0, true);
    out.sectorLo = s.getUint32(8, true);
    out.sectorHi = s.getUint32(12, true);
  }
  out.dataOut = vq.readableBytes - HEADER_BYTES;
  out.dataIn = vq.writableBytes - 1;
  if (out.type === VIRTIO_BLK_T_IN && out.dataOut > 0) return { kind: 'read-buffer-readable', head };
  if (out.type === VIRTIO_BLK_T_OUT && out.dataIn > 0) return { kind: 'write-buffer-writable', head };
  return null;
}

/** The one discard / write-zeroes segment of a request. */
export class DwzSegment {
  sectorLo = 0;
  sectorHi = 0;
  sectors = 0;
  flags = 0;
}

/** Reads the first segment after the header into `out` (the caller checked dataOut holds one). */
export function readDwzSegment(vq: SplitVirtqueue, bytes: readonly Uint8Array[], scratch: Scratch, out: DwzSegment): void {
  copyFromChain(vq, bytes, HEADER_BYTES, DWZ_SEGMENT_BYTES, scratch.bytes);
  const s = scratch.view;
  out.sectorLo = s.getUint32(0, true);
  out.sectorHi = s.getUint32(4, true);
  out.sectors = s.getUint32(8, true);
  out.flags = s.getUint32(12, true);
}
