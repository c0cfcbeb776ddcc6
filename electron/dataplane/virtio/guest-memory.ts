// Guest RAM as the device sees it: the regions of the vhost-user memory table, with every
// guest-physical range checked against them before anything touches the bytes.
import { endianness } from 'node:os';
import type { GuestMemoryRegion } from './types.js';

// Ring indexes are read and written with Atomics (host byte order) while virtio 1.x is
// little-endian: only a little-endian host can use them directly.
if (endianness() !== 'LE') throw new Error("Spindle's virtio device needs a little-endian host.");

/** Largest address or length a JavaScript number holds exactly; anything above is refused. */
const MAX_EXACT = Number.MAX_SAFE_INTEGER;

export class GuestMemory {
  readonly regions: readonly GuestMemoryRegion[];
  /** One DataView per region, over the whole region (offset 0 is the region's first byte). */
  readonly views: DataView[];
  private readonly starts: Float64Array;
  private readonly ends: Float64Array;
  private lastHit = 0;

  constructor(regions: readonly GuestMemoryRegion[]) {
    for (const r of regions) {
      if (
        !Number.isSafeInteger(r.guestAddr) ||
        r.guestAddr < 0 ||
        !Number.isSafeInteger(r.size) ||
        r.size <= 0 ||
        r.guestAddr + r.size > MAX_EXACT
      ) {
        throw new RangeError(`guest memory region at ${r.guestAddr} of ${r.size} bytes is not a valid range`);
      }
      if (r.memory.byteLength < r.size) {
        throw new RangeError(
          `guest memory region at 0x${r.guestAddr.toString(16)} maps ${r.memory.byteLength} bytes, ` + `fewer than its size ${r.size}`,
        );
      }
    }
    const sorted = [...regions].sort((a, b) => a.guestAddr - b.guestAddr);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].guestAddr < sorted[i - 1].guestAddr + sorted[i - 1].size) {
        throw new RangeError(
          `guest memory regions at 0x${sorted[i - 1].guestAddr.toString(16)} and ` + `0x${sorted[i].guestAddr.toString(16)} overlap`,
        );
      }
    }
    // Keep the caller's order: region indexes are the buffer ids registered with the block layer.
    this.regions = regions;
    this.views = regions.map((r) => new DataView(r.memory.buffer, r.memory.byteOffset, r.size));
    this.starts = Float64Array.from(regions, (r) => r.guestAddr);
    this.ends = Float64Array.from(regions, (r) => r.guestAddr + r.size);
  }

  /** Index of the region holding all of [addr, addr + len), or -1. len 0 needs addr inside a region. */
  find(addr: number, len: number): number {
    if (!(addr >= 0 && len >= 0 && addr <= MAX_EXACT && len <= MAX_EXACT)) return -1;
    const end = addr + len;
    const hit = this.lastHit;
    if (hit < this.starts.length && addr >= this.starts[hit] && end <= this.ends[hit] && addr < this.ends[hit]) return hit;
    for (let i = 0; i < this.starts.length; i++) {
      if (addr >= this.starts[i] && addr < this.ends[i] && end <= this.ends[i]) {
        this.lastHit = i;
        return i;
      }
    }
    return -1;
  }

  /** Index of the region holding addr (the start of a range that may continue into the next region), or -1. */
  findStart(addr: number): number {
    if (!(addr >= 0 && addr <= MAX_EXACT)) return -1;
    for (let i = 0; i < this.starts.length; i++) {
      if (addr >= this.starts[i] && addr < this.ends[i]) return i;
    }
    return -1;
  }

  /** Offset of guest address addr inside region index. */
  offset(index: number, addr: number): number {
    return addr - this.starts[index];
  }

  /** Guest address one past the last byte of region index. */
  regionEnd(index: number): number {
    return this.ends[index];
  }

  /** Translates a frontend (QEMU) virtual address, as vhost-user SET_VRING_ADDR sends them, to a guest address. */
  frontendToGuest(frontendAddr: number, len: number): number {
    for (const r of this.regions) {
      if (frontendAddr >= r.frontendAddr && frontendAddr + len <= r.frontendAddr + r.size) {
        return r.guestAddr + (frontendAddr - r.frontendAddr);
      }
    }
    return -1;
  }
}

/** Reads a little-endian u64 as a number, or -1 when it does not fit in 53 bits (so no address can match). */
export function readU64(view: DataView, offset: number): number {
  const lo = view.getUint32(offset, true);
  const hi = view.getUint32(offset + 4, true);
  return hi >= 0x200000 ? -1 : hi * 0x1_0000_0000 + lo;
}
