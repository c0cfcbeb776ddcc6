// Reading and writing the bytes of the chain SplitVirtqueue last walked (its seg* arrays), and
// handing its data parts to the block layer. `bytes` holds one view per guest memory region.
import type { BlockDevice } from '../block/types.js';
import type { SplitVirtqueue } from './split-virtqueue.js';

/** Copies `length` readable bytes from stream position `from` into `dst`. */
export function copyFromChain(vq: SplitVirtqueue, bytes: readonly Uint8Array[], from: number, length: number, dst: Uint8Array): void {
  let j = 0;
  for (let k = 0; k < vq.segCount && j < length; k++) {
    if (vq.segWritable[k]) break;
    const len = vq.segLen[k]!;
    if (from >= len) {
      from -= len;
      continue;
    }
    const src = bytes[vq.segRegion[k]!]!;
    const o = vq.segOffset[k]!;
    for (let i = from; i < len && j < length; i++) dst[j++] = src[o + i]!;
    from = 0;
  }
}

/** Writes the first n bytes of `src` (NUL padded past `srcLen`) to the start of the writable parts. */
export function copyToChain(vq: SplitVirtqueue, bytes: readonly Uint8Array[], src: Uint8Array, srcLen: number, n: number): void {
  let j = 0;
  for (let k = 0; k < vq.segCount && j < n; k++) {
    if (!vq.segWritable[k]) continue;
    const dst = bytes[vq.segRegion[k]!]!;
    const o = vq.segOffset[k]!;
    for (let i = 0; i < vq.segLen[k]! && j < n; i++, j++) dst[o + i] = j < srcLen ? src[j]! : 0;
  }
}

/** Receives a chain's data parts: region index, offset in that region, length. */
export type SegmentSink = Pick<BlockDevice, 'segment'>;

/** Hands `length` bytes of the chain's readable (writable=0) or writable (1) parts, after `skip`
 *  bytes, to `sink`: the request a BlockDevice began last, or a recorder (ENOSPC parking). The
 *  sink is an object, not a closure, so the hot path allocates nothing. */
export function emitSegments(vq: SplitVirtqueue, sink: SegmentSink, writable: number, skip: number, length: number): void {
  for (let k = 0; k < vq.segCount && length > 0; k++) {
    if (vq.segWritable[k] !== writable) continue;
    let len = vq.segLen[k]!;
    let off = vq.segOffset[k]!;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    off += skip;
    len -= skip;
    skip = 0;
    if (len > length) len = length;
    sink.segment(vq.segRegion[k]!, off, len);
    length -= len;
  }
}
