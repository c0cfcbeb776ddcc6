// Requests the block layer failed with ENOSPC under the 'stop' policy (QEMU's werror=stop): held,
// neither completed nor failed, until space is freed. Each is captured by guest-physical address
// (the data, the status byte) and by what was asked of the block layer (op, offset, length), so it
// can be retried while its ring is stopped (a VM paused for lack of space) and across a new guest
// memory table. A retry that succeeds while its ring is stopped is held as 'done' and reaches the
// guest, exactly once and with its own descriptor head, when the ring starts again.
// An episode runs from the first request parked until none waits any more; its start, a retry that
// found no space again, and its end are what the device tells its owner (takeEvents).
import { BlockOp, type BlockDevice } from '../block/types.js';
import type { GuestMemory } from './guest-memory.js';
import type { SplitVirtqueue } from './split-virtqueue.js';
import { emitSegments } from './chain-bytes.js';

const ENOSPC = 28;

/** Tags of retried requests: bit 30 set. Queue tags are (queue << 16 | slot) with queue < 1024, so
 *  below 2^26; the block backend keeps 2^31 and up for its own calls. */
export const PARKED_TAG = 0x4000_0000;
const MAX_ID = PARKED_TAG - 1;

export type ParkedState =
  /** Waits for space. */
  | 'waiting'
  /** Submitted again, not completed yet. */
  | 'retrying'
  /** Written (or failed for another reason): `status` waits for the ring to run to reach the guest. */
  | 'done'
  /** Its ring was set up anew (driver reset) while the retry was in flight: the result is thrown away. */
  | 'dropped';

/** The ring a request came from; a ring started with other addresses is a new ring. */
export interface RingId {
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  size: number;
}

export interface ParkedRequest {
  readonly id: number;
  readonly queue: number;
  readonly head: number;
  readonly ring: RingId;
  readonly op: BlockOp;
  readonly offset: number;
  /** Bytes the request writes: its data, or the range of a discard / write-zeroes; 0 for a flush. */
  readonly length: number;
  readonly flags: number;
  /** Guest-physical [address, length] pairs of the data, in order (none for flush, discard, write-zeroes). */
  readonly segments: readonly number[];
  readonly statusAddr: number;
  readonly usedLen: number;
  state: ParkedState;
  /** The virtio status to give the guest, once 'done'. */
  status: number;
}

export type ParkedInput = Omit<ParkedRequest, 'id' | 'state' | 'status'>;

/** What happened since the last takeEvents(), for the device to tell its owner. */
export interface ParkingEvents {
  /** Requests are parked: the first of an episode, or a retry that found no space again. */
  noSpace: { retried: boolean; parked: number; parkedBytes: number } | null;
  /** None waits any more: `completed` were written, `dropped` went with their driver. */
  recovered: { completed: number; dropped: number; waitedMs: number } | null;
}

export class EnospcParking {
  private readonly byId = new Map<number, ParkedRequest>();
  private nextId = 0;
  private settledWaiters: (() => void)[] = [];
  // The episode.
  private since = 0;
  private written = 0;
  private droppedCount = 0;
  private pendingNoSpace: 'first' | 'retried' | null = null;
  private retryFailed = false;

  get size(): number {
    return this.byId.size;
  }

  /** Requests not written yet (waiting or retrying) and their bytes. */
  get parked(): { count: number; bytes: number } {
    let count = 0,
      bytes = 0;
    for (const r of this.byId.values()) {
      if (r.state === 'waiting' || r.state === 'retrying') {
        count++;
        bytes += r.length;
      }
    }
    return { count, bytes };
  }

  /** Retries in the block layer (dropped ones too: their I/O still points into guest memory). */
  get retrying(): number {
    let n = 0;
    for (const r of this.byId.values()) if (r.state === 'retrying' || r.state === 'dropped') n++;
    return n;
  }

  add(input: ParkedInput): ParkedRequest {
    while (this.byId.has(this.nextId)) this.nextId = this.nextId === MAX_ID ? 0 : this.nextId + 1;
    const rec: ParkedRequest = { ...input, id: this.nextId, state: 'waiting', status: 0 };
    this.nextId = this.nextId === MAX_ID ? 0 : this.nextId + 1;
    this.byId.set(rec.id, rec);
    if (this.since === 0) {
      this.since = Date.now();
      this.written = 0;
      this.droppedCount = 0;
      this.pendingNoSpace = 'first';
    }
    return rec;
  }

  /** A settled request reached the guest. */
  remove(rec: ParkedRequest): void {
    this.byId.delete(rec.id);
    this.checkSettled();
  }

  /** Its driver is gone or set its ring up anew: forgotten (a retry in flight is thrown away when it completes). */
  drop(rec: ParkedRequest): void {
    if (rec.state === 'waiting' || rec.state === 'retrying') this.droppedCount++;
    if (rec.state === 'retrying') rec.state = 'dropped';
    else if (rec.state !== 'dropped') this.byId.delete(rec.id);
    this.checkSettled();
  }

  forQueue(queue: number): ParkedRequest[] {
    return [...this.byId.values()].filter((r) => r.queue === queue);
  }

  /**
   * Submits every waiting request again, in one batch. Segments are found in `mem` by guest address;
   * a request whose memory is gone is returned in `lost` (not submitted). Throws what submit()
   * throws, with the requests waiting again.
   */
  retry(mem: GuestMemory, blk: BlockDevice): { submitted: number; lost: ParkedRequest[] } {
    const lost: ParkedRequest[] = [];
    const begun: ParkedRequest[] = [];
    for (const r of this.byId.values()) {
      if (r.state !== 'waiting') continue;
      const parts = resolve(mem, r.segments);
      if (!parts) {
        lost.push(r);
        continue;
      }
      // Read and Write take their length from their segments, as when first submitted.
      const segmented = r.op === BlockOp.Read || r.op === BlockOp.Write;
      blk.begin(PARKED_TAG | r.id, r.op, r.offset, segmented ? 0 : r.length, r.flags);
      for (let i = 0; i < parts.length; i += 3) blk.segment(parts[i]!, parts[i + 1]!, parts[i + 2]!);
      r.state = 'retrying';
      begun.push(r);
    }
    if (begun.length > 0) {
      try {
        blk.submit();
      } catch (err) {
        for (const r of begun) r.state = 'waiting';
        throw err;
      }
    }
    return { submitted: begun.length, lost };
  }

  /** A retry completed with `result` (0 or -errno): 'waiting' again on ENOSPC, else 'done' (the
   *  caller settles its status). Returns the request, undefined for an unknown or dropped one. */
  completed(id: number, result: number): ParkedRequest | undefined {
    const rec = this.byId.get(id);
    if (!rec) return undefined;
    if (rec.state === 'dropped') {
      this.byId.delete(id);
      this.checkSettled();
      return undefined;
    }
    if (result === -ENOSPC) {
      rec.state = 'waiting';
      this.retryFailed = true;
    } else {
      rec.state = 'done';
      if (result === 0) this.written++;
    }
    this.checkSettled();
    return rec;
  }

  /** The events to raise now (after a completion batch, a retry, a ring start or a reset). */
  takeEvents(): ParkingEvents {
    // Once the retries in flight have all come back, one event says some still found no space.
    if (this.retryFailed && this.retrying === 0) {
      this.retryFailed = false;
      this.pendingNoSpace ??= 'retried';
    }
    const { count, bytes } = this.parked;
    let noSpace: ParkingEvents['noSpace'] = null;
    if (this.pendingNoSpace && count > 0) noSpace = { retried: this.pendingNoSpace === 'retried', parked: count, parkedBytes: bytes };
    this.pendingNoSpace = null;
    let recovered: ParkingEvents['recovered'] = null;
    if (this.since !== 0 && count === 0) {
      recovered = { completed: this.written, dropped: this.droppedCount, waitedMs: Date.now() - this.since };
      this.since = 0;
    }
    return { noSpace, recovered };
  }

  /** Resolves once no retry is in the block layer (their memory may then be unmapped). */
  settled(): Promise<void> {
    if (this.retrying === 0) return Promise.resolve();
    return new Promise((r) => this.settledWaiters.push(r));
  }

  private checkSettled(): void {
    if (this.settledWaiters.length && this.retrying === 0) for (const w of this.settledWaiters.splice(0)) w();
  }

  /** Forgets every request (the driver is gone); retries in flight are dropped when they complete. */
  clear(): void {
    for (const r of [...this.byId.values()]) this.drop(r);
    this.retryFailed = false;
    this.pendingNoSpace = null;
  }
}

/** The data parts of a chain the device took earlier (re-read from the ring), as guest-physical
 *  [address, length] pairs, or null when it no longer describes the `length` bytes submitted. */
export function captureData(vq: SplitVirtqueue, mem: GuestMemory, head: number, op: BlockOp, length: number): number[] | null {
  const out: number[] = [];
  if (op !== BlockOp.Write && op !== BlockOp.Read) return out;
  if (vq.rewalk(head) < 0) return null;
  const writable = op === BlockOp.Read ? 1 : 0;
  const skip = op === BlockOp.Read ? 0 : 16; // a write's data follows its 16-byte header
  const left = op === BlockOp.Read ? vq.writableBytes - 1 : vq.readableBytes - 16;
  if (left !== length) return null;
  emitSegments(vq, { segment: (region, off, len) => out.push(mem.regions[region]!.guestAddr + off, len) }, writable, skip, left);
  return out;
}

/** [address, length] pairs to [region, offset, length] triples, split where regions meet; null if
 *  any byte is outside guest memory. */
export function resolve(mem: GuestMemory, segments: readonly number[]): number[] | null {
  const out: number[] = [];
  for (let i = 0; i < segments.length; i += 2) {
    let addr = segments[i]!;
    let len = segments[i + 1]!;
    while (len > 0) {
      const r = mem.findStart(addr);
      if (r < 0) return null;
      const chunk = Math.min(len, mem.regionEnd(r) - addr);
      out.push(r, mem.offset(r, addr), chunk);
      addr += chunk;
      len -= chunk;
    }
  }
  return out;
}

export const sameRing = (a: RingId, b: RingId): boolean =>
  a.descAddr === b.descAddr && a.availAddr === b.availAddr && a.usedAddr === b.usedAddr && a.size === b.size;
