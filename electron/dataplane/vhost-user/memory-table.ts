// The guest memory a frontend shares (SET_MEM_TABLE): each region mapped once with mmap and
// exposed as a Uint8Array view (see posix.mapShared); frontend (QEMU virtual) addresses translated to guest
// physical ones, which is what the virtio layer works in.
import { posix, closeQuietly, SEAL_SHRINK } from '../native/posix.js';
import type { GuestMemoryRegion } from '../virtio/types.js';
import { ProtocolError } from './codec.js';
import type { MemRegionDesc } from './protocol.js';

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Why `fd` cannot be mapped as memory a frontend shares, or null. A page of a shared mapping that
 * lies past the end of its file raises SIGBUS when touched, and a signal ends the whole process:
 * every disk it serves and the app. The frontend keeps its fd, so only memory whose size nobody can
 * reduce is mapped: a memfd sealed with F_SEAL_SHRINK, which QEMU's memory-backend-memfd is by
 * default (seal=on). Refused: regular files, tmpfs and /dev/shm files, unsealed memfds (any holder
 * can truncate them), and hugetlbfs memory (a hole punched in it faults with SIGBUS once the huge
 * page pool runs dry, and seals cannot forbid holes without forbidding guest writes).
 */
export function sharedMemoryProblem(fd: number): string | null {
  const seals = posix.fileSeals(fd);
  const crash = 'which would crash every disk this process serves';
  if (seals < 0) return `is not a memfd: a regular file or a device can be truncated under the mapping, ${crash}`;
  if (!(seals & SEAL_SHRINK))
    return `is a memfd not sealed against shrinking (F_SEAL_SHRINK): the frontend could truncate it under the mapping, ${crash}`;
  if (posix.onHugetlbfs(fd)) return `is hugetlbfs memory: a page punched out of it faults when touched once huge pages run out, ${crash}`;
  return null;
}

/** How to give Spindle guest RAM it accepts. */
const MEMORY_HINT = "QEMU's memory-backend-memfd without hugetlb, which seals it unless seal=off";

export class MemoryTable {
  private constructor(
    readonly regions: GuestMemoryRegion[],
    private readonly fds: number[],
  ) {}

  static readonly empty = (): MemoryTable => new MemoryTable([], []);

  /**
   * Maps every region. Takes ownership of `fds` (one per region, closed on failure or unmap).
   * Refuses empty, overlapping, unmappable or truncatable (sharedMemoryProblem) regions with a
   * sentence naming the region.
   */
  static map(descs: readonly MemRegionDesc[], fds: number[], writable = true): MemoryTable {
    const regions: GuestMemoryRegion[] = [];
    try {
      descs.forEach((d, i) => {
        if (d.size === 0) throw new ProtocolError(`memory region ${i} is empty`);
        if (
          d.guestAddr + d.size > Number.MAX_SAFE_INTEGER ||
          d.frontendAddr + d.size > Number.MAX_SAFE_INTEGER ||
          d.mmapOffset + d.size > Number.MAX_SAFE_INTEGER
        ) {
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
        // Seals only ever grow: checked before mapShared checks the size, the size cannot drop after.
        const problem = sharedMemoryProblem(fds[i]!);
        if (problem) throw new ProtocolError(`memory region ${i} ${problem} (share guest RAM with ${MEMORY_HINT})`);
        let memory: Uint8Array;
        try {
          memory = posix.mapShared(fds[i]!, d.mmapOffset, d.size, writable);
        } catch (err) {
          throw new ProtocolError(
            `memory region ${i} (${hex(d.size)} bytes at offset ${hex(d.mmapOffset)}) cannot be mapped: ${(err as Error).message}`,
          );
        }
        regions.push({ guestAddr: d.guestAddr, size: d.size, frontendAddr: d.frontendAddr, memory });
      });
    } catch (err) {
      regions.forEach((r) => posix.unmap(r.memory));
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
    for (const r of this.regions) posix.unmap(r.memory);
    this.fds.forEach(closeQuietly);
    this.regions.length = 0;
    this.fds.length = 0;
  }
}
