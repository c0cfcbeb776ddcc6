// A guest request's data segments (registered buffer id, offset, length), flat, and the parts
// of them that cover a byte range of the request: how one guest request becomes host requests on
// the same guest memory, without a copy.

export type Segments = number[]; // [bufferId, bufferOffset, length, ...]

/** Calls `emit` for each part of `segs` inside request bytes [start, end). */
export function forSlice(segs: Segments, start: number, end: number, emit: (id: number, off: number, len: number) => void): void {
  let pos = 0;
  for (let i = 0; i < segs.length && pos < end; i += 3) {
    const len = segs[i + 2]!;
    const s = Math.max(start, pos);
    const e = Math.min(end, pos + len);
    if (s < e) emit(segs[i]!, segs[i + 1]! + (s - pos), e - s);
    pos += len;
  }
}

/** Fills request bytes [start, end) of guest memory with zeros. */
export function zeroSlice(buffers: Map<number, Uint8Array>, segs: Segments, start: number, end: number): void {
  forSlice(segs, start, end, (id, off, len) => buffers.get(id)?.fill(0, off, off + len));
}

/** Copies `src` into request bytes [start, start + src.length) of guest memory (compressed clusters only). */
export function copyIntoSlice(buffers: Map<number, Uint8Array>, segs: Segments, start: number, src: Uint8Array): void {
  let at = 0;
  forSlice(segs, start, start + src.length, (id, off, len) => {
    buffers.get(id)?.set(src.subarray(at, at + len), off);
    at += len;
  });
}
