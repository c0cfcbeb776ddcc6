// ENOSPC policy 'stop' on the device's side (QEMU's werror=stop): a request the block layer
// failed with ENOSPC is parked instead of completed, settled when a retry finishes, and given to
// the guest when its ring runs. The records themselves live in enospc-parking.ts.
import type { BlockOp } from '../block/types.js';
import { VIRTIO_BLK_S_IOERR } from './blk-config.js';
import { blkStatus, type BlkQueue } from './blk-queue.js';
import { captureData, sameRing, type EnospcParking, type ParkedRequest } from './enospc-parking.js';
import type { GuestMemory } from './guest-memory.js';
import type { QueueFault } from './queue-fault.js';

/** What the parked requests need of the device that holds them. */
export interface ParkingHost {
  /** The current guest memory table (it changes with setMemory). */
  memory(): GuestMemory | null;
  bytes(): readonly Uint8Array[];
  queue(index: number): BlkQueue | null;
  /** The queue has used entries to publish. */
  markDirty(q: BlkQueue): void;
  breakQueue(q: BlkQueue, fault: QueueFault): void;
  countFailure(op: number): void;
}

export class BlkParking {
  constructor(
    private readonly host: ParkingHost,
    readonly records: EnospcParking,
  ) {}

  /** A request failed with ENOSPC: keep what is needed to retry it, and give its slot back. */
  park(q: BlkQueue, slot: number): void {
    const head = q.head[slot]!;
    const op = q.op[slot] as BlockOp;
    const mem = this.host.memory()!;
    const segments = captureData(q.vq, mem, head, op, q.length[slot]!);
    if (!segments) {
      // The guest rewrote the chain while it was in flight: it cannot be retried as it was asked.
      q.complete(slot, this.host.bytes(), VIRTIO_BLK_S_IOERR);
      this.host.countFailure(op);
      return;
    }
    this.records.add({
      queue: q.index,
      head,
      ring: q.ring,
      op,
      offset: q.offset[slot]!,
      length: q.length[slot]!,
      flags: q.flags[slot]!,
      segments,
      statusAddr: mem.regions[q.statusRegion[slot]!]!.guestAddr + q.statusOffset[slot]!,
      usedLen: q.usedLen[slot]!,
    });
    q.release(slot);
  }

  /** A parked request is settled with `status`: now if its ring runs, else when it starts again. */
  settle(rec: ParkedRequest, status: number): void {
    rec.state = 'done';
    rec.status = status;
    if (status === VIRTIO_BLK_S_IOERR) this.host.countFailure(rec.op);
    const q = this.host.queue(rec.queue);
    if (q && !q.stopped && !q.broken && sameRing(q.ring, rec.ring)) this.deliver(q, rec);
  }

  /** Gives the guest a settled parked request: its status byte, then its own head on the used ring. */
  private deliver(q: BlkQueue, rec: ParkedRequest): void {
    this.records.remove(rec);
    const mem = this.host.memory();
    const r = mem ? mem.find(rec.statusAddr, 1) : -1;
    if (r < 0) {
      this.host.breakQueue(q, { kind: 'parked-status-lost', head: rec.head, statusAddr: rec.statusAddr });
      return;
    }
    this.host.bytes()[r]![mem!.offset(r, rec.statusAddr)] = rec.status;
    q.vq.pushUsed(rec.head, rec.usedLen);
    this.host.markDirty(q);
  }

  /**
   * A ring started: the parked requests taken from it are this device's own again. The same ring
   * (same addresses; the base it was stopped at, or, with an inflight region, still marked in flight
   * there) keeps them, and they must not be resubmitted from the inflight region a second time; a
   * ring set up anew (the driver reset it) drops them, as QEMU drops requests on a device reset.
   * The caller publishes what was delivered.
   */
  adopt(q: BlkQueue, sameBase: boolean): void {
    const log = q.vq.inflight;
    for (const rec of this.records.forQueue(q.index)) {
      const same = sameRing(rec.ring, q.ring) && (log ? log.isInflight(rec.head) : sameBase);
      if (!same) {
        this.records.drop(rec);
        continue;
      }
      if (log) q.vq.dropResubmit(rec.head);
      if (rec.state === 'done') this.deliver(q, rec);
    }
  }

  /** A retried parked request (its tag carried PARKED_TAG) came back from the block layer. */
  completed(id: number, result: number): void {
    const rec = this.records.completed(id, result);
    if (!rec || rec.state !== 'done') return;
    this.settle(rec, blkStatus(result));
  }
}
