// One virtio-blk request queue: its ring and a preallocated slot per request it may have in flight
// (a request's tag for the block layer is its queue and slot), and how a slot is completed.
import type { BlockOp } from '../block/types.js';
import { VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP } from './blk-config.js';
import type { RingId } from './enospc-parking.js';
import type { SplitVirtqueue } from './split-virtqueue.js';

const EOPNOTSUPP = 95;

/** The status byte for a block layer result (0 or -errno). */
export function blkStatus(result: number): number {
  return result === 0 ? VIRTIO_BLK_S_OK : result === -EOPNOTSUPP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR;
}

export class BlkQueue {
  readonly head: Uint16Array;
  readonly usedLen: Uint32Array;
  readonly statusRegion: Int32Array;
  readonly statusOffset: Float64Array;
  // What was asked of the block layer, kept to retry a request that met ENOSPC.
  readonly op: Uint8Array;
  readonly offset: Float64Array;
  readonly length: Float64Array;
  readonly flags: Uint8Array;
  readonly free: Uint16Array;
  freeCount: number;
  /** Slots begun in the batch being built, failed together if submit() throws. */
  readonly batch: Uint16Array;
  batchCount = 0;
  inFlight = 0;
  stopped = false;
  broken = false;
  dirty = false;
  drained: (() => void)[] = [];

  constructor(
    readonly index: number,
    readonly vq: SplitVirtqueue,
    readonly ring: RingId,
  ) {
    const n = vq.size;
    this.head = new Uint16Array(n);
    this.usedLen = new Uint32Array(n);
    this.statusRegion = new Int32Array(n);
    this.statusOffset = new Float64Array(n);
    this.op = new Uint8Array(n);
    this.offset = new Float64Array(n);
    this.length = new Float64Array(n);
    this.flags = new Uint8Array(n);
    this.free = new Uint16Array(n);
    for (let i = 0; i < n; i++) this.free[i] = n - 1 - i;
    this.freeCount = n;
    this.batch = new Uint16Array(n);
  }

  /** Takes a slot for a request and adds it to the batch; -1 when none is free. */
  take(
    head: number,
    statusRegion: number,
    statusOffset: number,
    usedLen: number,
    op: BlockOp,
    offset: number,
    length: number,
    flags: number,
  ): number {
    if (this.freeCount === 0) return -1;
    const slot = this.free[--this.freeCount]!;
    this.head[slot] = head;
    this.usedLen[slot] = usedLen;
    this.statusRegion[slot] = statusRegion;
    this.statusOffset[slot] = statusOffset;
    this.op[slot] = op;
    this.offset[slot] = offset;
    this.length[slot] = length;
    this.flags[slot] = flags;
    this.inFlight++;
    this.batch[this.batchCount++] = slot;
    return slot;
  }

  /** Gives a slot back without completing it to the guest (its request was parked). */
  release(slot: number): void {
    this.free[this.freeCount++] = slot;
    this.inFlight--;
  }

  /** Writes the slot's status byte, puts its head on the used ring (published later) and frees it. */
  complete(slot: number, bytes: readonly Uint8Array[], status: number): void {
    bytes[this.statusRegion[slot]!]![this.statusOffset[slot]!] = status;
    this.vq.pushUsed(this.head[slot]!, this.usedLen[slot]!);
    this.release(slot);
  }

  /** Resolves stopQueue waiters once nothing is in flight. */
  wakeIfDrained(): void {
    if (this.inFlight === 0 && this.drained.length) for (const resolve of this.drained.splice(0)) resolve();
  }
}

/** The queues with used entries not yet published, each listed once. */
export class DirtyQueues {
  private readonly list: Uint16Array;
  private count = 0;

  constructor(numQueues: number) {
    this.list = new Uint16Array(numQueues);
  }

  mark(q: BlkQueue): void {
    if (q.dirty) return;
    q.dirty = true;
    this.list[this.count++] = q.index;
  }

  /** Publishes the used entries of every queue marked since the last call; wakes stopQueue waiters. */
  publish(queues: readonly (BlkQueue | null)[]): void {
    const n = this.count;
    this.count = 0;
    for (let d = 0; d < n; d++) {
      const q = queues[this.list[d]!];
      if (!q || !q.dirty) continue;
      q.dirty = false;
      q.vq.publishUsed();
      q.wakeIfDrained();
    }
  }
}
