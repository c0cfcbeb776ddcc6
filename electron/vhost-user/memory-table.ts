// The guest memory a frontend shares (SET_MEM_TABLE): each region mapped once with mmap and
// exposed as an external ArrayBuffer; frontend (QEMU virtual) addresses translated to guest
// physical ones, which is what the virtio layer works in.
import { posix, closeQuietly } from '../native/posix.js';
import type { GuestMemoryRegion } from '../virtio/types.js';
import { ProtocolError } from './codec.js';
import type { MemRegionDesc } from './protocol.js';

const hex = (n: number): string => `0x${n.toString(16)}`;

export class MemoryTable {
  private constructor(readonly regions: GuestMemoryRegion[], private readonly fds: number[]) {}

  static readonly empty = (): MemoryTable => new MemoryTable([], []);

  /**
   * Maps every region. Takes ownership of `fds` (one per region, closed on failure or unmap).
   * Refuses empty, overlapping or unmappable regions with a sentence naming the region.
   */
  static map(descs: readonly MemRegionDesc[], fds: number[], writable = true): MemoryTable {
    const regions: GuestMemoryRegion[] = [];
    try {
      descs.forEach((d, i) => {
        if (d.size === 0) throw new ProtocolError(`memory region ${i} is empty`);
        if (d.guestAddr + d.size > Number.MAX_SAFE_INTEGER || d.frontendAddr + d.size > Number.MAX_SAFE_INTEGER || d.mmapOffset + d.size > Number.MAX_SAFE_INTEGER) {
          throw new ProtocolError(`memory region ${i} ends beyond the addresses Spindle supports`);
        }
        for (let j = 0; j < i; j++) {
          const o = descs[j]!;
          if (d.guestAddr < o.guestAddr + o.size && o.guestAddr < d.guestAddr + d.size) {
            throw new ProtocolError(`memory region ${i} (guest ${hex(d.guestAddr)}+${hex(d.size)}) overlaps region ${j}`);
          }
          if (d.frontendAddr < o.frontendAddr + o.size && o.frontendAddr < d.frontendAddr + d.size) {
            throw new ProtocolError(`memory region ${i} (user address ${hex(d.frontendAddr)}+${hex(d.size)}) overlaps region ${j}`);
          }
        }
        let memory: ArrayBuffer;
        try {
          memory = posix.mapShared(fds[i]!, d.mmapOffset, d.size, writable);
        } catch (err) {
          throw new ProtocolError(`memory region ${i} (${hex(d.size)} bytes at offset ${hex(d.mmapOffset)}) cannot be mapped: ${(err as Error).message}`);
        }
        regions.push({ guestAddr: d.guestAddr, size: d.size, frontendAddr: d.frontendAddr, memory });
      });
    } catch (err) {
      regions.forEach((r) => posix.unmap(r.memory as ArrayBuffer));
      fds.forEach(closeQuietly);
      throw err;
    }
    return new MemoryTable(regions, fds);
  }

  /** The guest physical address of a frontend address range, or null if no single region holds it. */
  frontendToGuest(frontendAddr: number, length: number): number | null {
    for (const r of this.regions) {
      if (frontendAddr >= r.frontendAddr && frontendAddr + length <= r.frontendAddr + r.size) {
        return r.guestAddr + (frontendAddr - r.frontendAddr);
      }
    }
    return null;
  }

  /** Unmaps every region (their ArrayBuffers are detached) and closes the region fds. */
  unmap(): void {
    for (const r of this.regions) posix.unmap(r.memory as ArrayBuffer);
    this.fds.forEach(closeQuietly);
    this.regions.length = 0;
    this.fds.length = 0;
  }
}
