// The device side of a virtio 1.x split virtqueue: reads chains the guest made available,
// publishes used entries and decides when to interrupt the guest.
//
// Memory ordering: the rings live in memory the guest's vCPUs write concurrently. The two index
// fields are the synchronisation points and are accessed with Atomics (which V8 allows on views
// of plain ArrayBuffers too, e.g. the buffers over mmap'd guest RAM):
//  - avail idx is read with Atomics.load once per pass; the compiler cannot hoist the ring and
//    descriptor reads above it, and x86-64 does not reorder loads with loads.
//  - used idx is written with Atomics.store (seq_cst: an xchg on x86-64), so the used elements
//    written before it are visible first, and the following read of used_event / re-read of
//    avail idx cannot move before it (the full barrier virtio asks for around EVENT_IDX).
// Everything else (descriptors, ring entries, used elements) uses plain little-endian accesses.
import { GuestMemory, readU64 } from './guest-memory.js';
import { InflightLog, InflightRegionError, type TrackedVringSetup } from './inflight-log.js';
import type { RingError } from './ring-error.js';

export { describeRingError, type RingError } from './ring-error.js';

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const VIRTQ_USED_F_NO_NOTIFY = 1;
export const MAX_QUEUE_SIZE = 32768;

/** The split-ring rule for EVENT_IDX: notify when event lies in (old, new]. All values u16. */
export function vringNeedEvent(event: number, newIdx: number, old: number): boolean {
  return ((newIdx - event - 1) & 0xffff) < ((newIdx - old) & 0xffff);
}

const hex = (n: number) => `0x${n.toString(16)}`;

export interface QueueOptions {
  eventIdx: boolean;
  indirect: boolean;
  /** Longest indirect table accepted (besides the ring size). */
  maxIndirect: number;
}

/** Thrown by constructor when the ring itself cannot be used; the message is a sentence. */
export class RingSetupError extends Error {}

export class SplitVirtqueue {
  readonly size: number;
  readonly notify: () => void;
  readonly eventIdx: boolean;
  /** Next avail ring position to read (free-running u16). */
  lastAvailIdx: number;

  // The chain last returned by pop(): its parts, in guest memory order, split at region borders.
  segCount = 0;
  segRegion: Int32Array;
  segOffset: Float64Array;
  segLen: Float64Array;
  segWritable: Uint8Array;
  readableBytes = 0;
  writableBytes = 0;
  /** Why the last call failed, when it returned -1 (see describeRingError for its sentence). */
  error: RingError | null = null;

  private readonly mem: GuestMemory;
  private readonly indirect: boolean;
  private readonly maxIndirect: number;
  private readonly descView: DataView;
  private readonly descOffset: number;
  private readonly avail: Uint16Array;
  private readonly used16: Uint16Array;
  private readonly used32: Uint32Array;
  private availIdxSeen: number;
  private usedIdx = 0;
  private usedPublished = 0;

  /** Records popped and completed chains in the frontend's inflight region, when it shared one. */
  readonly inflight: InflightLog | null = null;
  /** Heads a previous backend took but never completed, to be handled before new avail entries. */
  private resubmit: Uint16Array = new Uint16Array(0);
  private resubmitPos = 0;
  /** Last-batch entries the restart found already delivered to the guest (spec's used_idx fix-up). */
  readonly fixedUp: number = 0;

  constructor(mem: GuestMemory, setup: TrackedVringSetup, opts: QueueOptions) {
    const size = setup.size;
    if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
      throw new RingSetupError(`the ring size ${size} is not a power of two between 1 and ${MAX_QUEUE_SIZE}`);
    }
    this.size = size;
    this.notify = setup.notify;
    this.eventIdx = opts.eventIdx;
    this.indirect = opts.indirect;
    this.maxIndirect = Math.max(size, opts.maxIndirect);
    this.mem = mem;
    this.lastAvailIdx = setup.lastAvailIdx & 0xffff;
    this.availIdxSeen = this.lastAvailIdx;

    const evt = opts.eventIdx ? 2 : 0;
    const part = (what: string, addr: number, len: number, align: number): [number, number] => {
      const r = mem.find(addr, len);
      if (r < 0) throw new RingSetupError(`the ${what} at ${hex(addr)} (${len} bytes) is not inside guest memory`);
      const off = mem.offset(r, addr);
      if (off % align !== 0 || addr % align !== 0) {
        throw new RingSetupError(`the ${what} at ${hex(addr)} is not ${align}-byte aligned`);
      }
      return [r, off];
    };
    const [dr, doff] = part('descriptor table', setup.descAddr, 16 * size, 16);
    const [ar, aoff] = part('avail ring', setup.availAddr, 4 + 2 * size + evt, 2);
    const [ur, uoff] = part('used ring', setup.usedAddr, 4 + 8 * size + evt, 4);
    this.descView = mem.views[dr];
    this.descOffset = doff;
    const amem = mem.regions[ar].memory;
    const umem = mem.regions[ur].memory;
    // Typed arrays align to their ArrayBuffer's start, and a region's view may sit at any offset
    // in it (mapped inside a V8 buffer at an mmap offset that is not 4-byte aligned).
    if ((amem.byteOffset + aoff) % 2 !== 0 || (umem.byteOffset + uoff) % 4 !== 0) {
      throw new RingSetupError(
        "the rings are not aligned in this process's mapping of guest memory (a memory region offset that is not 4-byte aligned)",
      );
    }
    // The event fields are covered by the views only when EVENT_IDX was checked above.
    this.avail = new Uint16Array(amem.buffer, amem.byteOffset + aoff, 2 + size + (evt >> 1));
    this.used16 = new Uint16Array(umem.buffer, umem.byteOffset + uoff, 2 + 4 * size + (evt >> 1));
    this.used32 = new Uint32Array(umem.buffer, umem.byteOffset + uoff, 1 + 2 * size);
    // Continue from the used idx in memory: after a reconnect it may lag lastAvailIdx by the
    // requests that were in flight.
    this.usedIdx = this.usedPublished = Atomics.load(this.used16, 1);
    if (setup.inflight) {
      try {
        const log = new InflightLog(setup.inflight, size);
        const r = log.recover(this.usedIdx);
        this.inflight = log;
        this.resubmit = r.resubmit;
        this.fixedUp = r.fixedUp;
      } catch (err) {
        if (err instanceof InflightRegionError) throw new RingSetupError(err.message);
        throw err;
      }
      // Every chain taken so far is either used or still in flight, so the next new one is at
      // used idx + in flight, whatever base the frontend guessed (QEMU falls back to used idx).
      this.lastAvailIdx = this.availIdxSeen = (this.usedIdx + this.resubmit.length) & 0xffff;
    }
    if (evt) Atomics.store(this.used16, 2 + 4 * size, this.lastAvailIdx);

    const cap = size + 8;
    this.segRegion = new Int32Array(cap);
    this.segOffset = new Float64Array(cap);
    this.segLen = new Float64Array(cap);
    this.segWritable = new Uint8Array(cap);
  }

  /** Reads avail idx (once) and returns how many new chains it announces, or -1 (error set) when
   *  it claims more than the ring holds. */
  available(): number {
    const idx = Atomics.load(this.avail, 1);
    const n = (idx - this.lastAvailIdx) & 0xffff;
    if (n > this.size) {
      this.error = { kind: 'avail-index-jump', from: this.lastAvailIdx, to: idx, size: this.size };
      return -1;
    }
    this.availIdxSeen = idx;
    return n;
  }

  /** Takes the next available chain (there must be one per available()) and walks it into the seg*
   *  arrays. Returns its head index, or -1 with error set when the chain is malformed. */
  pop(): number {
    const head = this.avail[2 + (this.lastAvailIdx & (this.size - 1))];
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
    return this.walkChain(head);
  }

  /** Walks the chain at `head` into the seg* arrays, as pop() does: also for a chain taken earlier
   *  and not yet used (a request the device parked and now resubmits). Returns head, or -1 with error set. */
  walkChain(head: number): number {
    if (head >= this.size) {
      this.error = { kind: 'head-out-of-range', head, size: this.size };
      return -1;
    }
    this.inflight?.markPopped(head);
    return this.walk(head) ? head : -1;
  }

  /** Walks a chain this device took earlier and still holds (a request parked for lack of space),
   *  without recording it in the inflight region again. Returns head, or -1 with error set. */
  rewalk(head: number): number {
    if (head >= this.size) {
      this.error = { kind: 'held-head-out-of-range', head, size: this.size };
      return -1;
    }
    return this.walk(head) ? head : -1;
  }

  /** Takes `head` off the chains to resubmit: the device still holds that request itself (parked
   *  for lack of space across a ring stop), so it must not be started a second time. */
  dropResubmit(head: number): boolean {
    const at = this.resubmit.indexOf(head, this.resubmitPos);
    if (at < 0) return false;
    this.resubmit.copyWithin(at, at + 1);
    this.resubmit = this.resubmit.subarray(0, this.resubmit.length - 1);
    return true;
  }

  /** Chains left to resubmit from the inflight region. */
  get pendingResubmits(): number {
    return this.resubmit.length - this.resubmitPos;
  }

  /** Takes the oldest chain a previous backend left in flight (there must be one per
   *  pendingResubmits) and walks it like pop(). It stays marked in flight until completed. */
  popResubmit(): number {
    const head = this.resubmit[this.resubmitPos++]!;
    return this.walk(head) ? head : -1;
  }

  private walk(head: number): boolean {
    this.segCount = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
    let view = this.descView;
    let base = this.descOffset;
    let count = this.size;
    let inTable = false;
    let i = head;
    let seen = 0;
    let sawWritable = false;
    for (;;) {
      if (++seen > count) {
        this.error = { kind: 'chain-loop', head, limit: count, indirect: inTable };
        return false;
      }
      const o = base + 16 * i;
      const addr = readU64(view, o);
      const len = view.getUint32(o + 8, true);
      const flags = view.getUint16(o + 12, true);
      const next = view.getUint16(o + 14, true);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (inTable) {
          this.error = { kind: 'nested-indirect', head };
          return false;
        }
        if (!this.indirect) {
          this.error = { kind: 'indirect-not-negotiated', head };
          return false;
        }
        if (seen !== 1 || flags & VIRTQ_DESC_F_NEXT) {
          this.error = { kind: 'indirect-not-alone', head };
          return false;
        }
        if (len === 0 || len % 16 !== 0) {
          this.error = { kind: 'indirect-bad-length', head, len };
          return false;
        }
        if (len / 16 > this.maxIndirect) {
          this.error = { kind: 'indirect-too-long', head, count: len / 16, limit: this.maxIndirect };
          return false;
        }
        const r = this.mem.find(addr, len);
        if (r < 0) {
          this.error = { kind: 'indirect-outside-memory', head, addr, len };
          return false;
        }
        view = this.mem.views[r];
        base = this.mem.offset(r, addr);
        count = len / 16;
        inTable = true;
        i = 0;
        seen = 0;
        continue;
      }
      const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (writable) sawWritable = true;
      else if (sawWritable) {
        this.error = { kind: 'readable-after-writable', head };
        return false;
      }
      if (len > 0 && !this.addSegment(addr, len, writable)) {
        this.error = { kind: 'descriptor-outside-memory', head, addr, len };
        return false;
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) return true;
      if (next >= count) {
        this.error = { kind: 'next-out-of-range', head, next, indirect: inTable, size: count };
        return false;
      }
      i = next;
    }
  }

  /** Records [addr, addr+len) as chain parts, split where guest regions meet. */
  private addSegment(addr: number, len: number, writable: boolean): boolean {
    if (addr < 0) return false;
    while (len > 0) {
      const r = this.mem.findStart(addr);
      if (r < 0) return false;
      const chunk = Math.min(len, this.mem.regionEnd(r) - addr);
      if (this.segCount === this.segRegion.length) this.grow();
      const k = this.segCount++;
      this.segRegion[k] = r;
      this.segOffset[k] = this.mem.offset(r, addr);
      this.segLen[k] = chunk;
      this.segWritable[k] = writable ? 1 : 0;
      if (writable) this.writableBytes += chunk;
      else this.readableBytes += chunk;
      addr += chunk;
      len -= chunk;
    }
    return true;
  }

  // Only chains that cross region borders need more parts than descriptors: rare, so grow lazily.
  private grow(): void {
    const cap = this.segRegion.length * 2;
    const r = new Int32Array(cap);
    r.set(this.segRegion);
    this.segRegion = r;
    const o = new Float64Array(cap);
    o.set(this.segOffset);
    this.segOffset = o;
    const l = new Float64Array(cap);
    l.set(this.segLen);
    this.segLen = l;
    const w = new Uint8Array(cap);
    w.set(this.segWritable);
    this.segWritable = w;
  }

  /** Adds a used element; visible to the guest at the next publishUsed(). */
  pushUsed(head: number, len: number): void {
    const k = 1 + 2 * (this.usedIdx & (this.size - 1));
    this.used32[k] = head;
    this.used32[k + 1] = len;
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.inflight?.stageUsed(head);
  }

  /** Publishes the used elements pushed since the last call and interrupts the guest once if it wants. */
  publishUsed(): void {
    const newIdx = this.usedIdx;
    const old = this.usedPublished;
    if (newIdx === old) return;
    Atomics.store(this.used16, 1, newIdx);
    this.inflight?.published(newIdx);
    this.usedPublished = newIdx;
    const wanted = this.eventIdx
      ? vringNeedEvent(Atomics.load(this.avail, 2 + this.size), newIdx, old)
      : (Atomics.load(this.avail, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    if (wanted) this.notify();
  }

  /** With EVENT_IDX, asks the guest to kick at the next new chain, then re-reads avail idx
   *  (after the barrier) so a chain added meanwhile is not missed. True when there is more work. */
  armKick(): boolean {
    if (!this.eventIdx) return false;
    Atomics.store(this.used16, 2 + 4 * this.size, this.lastAvailIdx);
    return Atomics.load(this.avail, 1) !== this.availIdxSeen;
  }
}
