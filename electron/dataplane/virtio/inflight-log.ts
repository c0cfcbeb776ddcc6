// Inflight I/O tracking for one split virtqueue (vhost-user.rst, "Inflight I/O tracking"): the
// device records every chain it takes from the avail ring in a shared-memory region the frontend
// (QEMU) keeps alive across backend crashes, so a restarted backend knows which requests it owed
// the guest. Region layout (QueueRegionSplit, little-endian):
//   u64 features, u16 version, u16 desc_num, u16 last_batch_head, u16 used_idx,
//   then desc_num x DescStateSplit { u8 inflight, u8 padding[5], u16 next, u64 counter }
//
// Steps, in the spec's order so that a crash between any two of them is recoverable:
//   pop:     desc[i].counter = counter++, then desc[i].inflight = 1
//   used:    per used element desc[i].next = last_batch_head, last_batch_head = i;
//            publish used->idx; then desc[i].inflight = 0 for the batch; then used_idx = used->idx
//   restart: if used_idx != used->idx, the last batch reached the guest but its flags were not
//            cleared: clear the (used->idx - used_idx) entries listed from last_batch_head; then
//            resubmit every entry still in flight, oldest counter first.
// A SIGKILL loses no store already executed (the region is a memfd QEMU also maps), but the JIT
// may reorder plain stores: the flag and used_idx stores that order the steps use Atomics.
import type { VringSetup } from './types.js';

export const INFLIGHT_VERSION = 1;
export const INFLIGHT_QUEUE_HEADER_BYTES = 16;
export const INFLIGHT_DESC_BYTES = 16;

/** A ring start that also carries the queue's inflight region (when INFLIGHT_SHMFD was negotiated). */
export interface TrackedVringSetup extends VringSetup {
  inflight?: DataView;
}

/** Test hook, called after every store of the protocol above; unit tests throw from it to stop the
 *  backend exactly there (what SIGKILL does) and restart from the memory as it was. */
export const inflightSteps: { hook: ((step: string) => void) | null } = { hook: null };

/** The region cannot be used; the message is a sentence. */
export class InflightRegionError extends Error {}

export interface InflightRecovery {
  /** Heads still owed to the guest, oldest first. */
  resubmit: Uint16Array;
  /** Entries of the last batch whose flags were cleared because the guest had already seen them. */
  fixedUp: number;
}

export class InflightLog {
  readonly size: number;
  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly u32: Uint32Array;
  /** Next counter value (a u64 in the region; stays far below 2^53 here). */
  private counter = 1;
  /** Heads staged for the next published batch (their flags are cleared after publishing). */
  private batch: Uint16Array;
  private batchCount = 0;

  constructor(region: DataView, size: number) {
    const need = INFLIGHT_QUEUE_HEADER_BYTES + INFLIGHT_DESC_BYTES * size;
    if (region.byteLength < need) {
      throw new InflightRegionError(`the inflight region is ${region.byteLength} bytes, a ring of ${size} needs ${need}`);
    }
    if (region.byteOffset % 8 !== 0) throw new InflightRegionError('the inflight region is not 8-byte aligned');
    this.size = size;
    this.batch = new Uint16Array(size);
    this.u8 = new Uint8Array(region.buffer, region.byteOffset, need);
    this.u16 = new Uint16Array(region.buffer, region.byteOffset, need >> 1);
    this.u32 = new Uint32Array(region.buffer, region.byteOffset, need >> 2);
    const version = this.u16[4];
    if (version === 0) {
      // A region nobody has used yet: claim it.
      this.u16[5] = size;
      Atomics.store(this.u16, 4, INFLIGHT_VERSION);
    } else if (version !== INFLIGHT_VERSION) {
      throw new InflightRegionError(`the inflight region has version ${version}, only ${INFLIGHT_VERSION} is known`);
    } else if (this.u16[5]! < size) {
      // A larger region is fine (the frontend sized it for its largest ring; a driver may pick a smaller one).
      throw new InflightRegionError(`the inflight region describes a ring of ${this.u16[5]} entries, the ring has ${size}`);
    }
  }

  private static descByte(head: number): number {
    return INFLIGHT_QUEUE_HEADER_BYTES + INFLIGHT_DESC_BYTES * head;
  }

  isInflight(head: number): boolean {
    return this.u8[InflightLog.descByte(head)] === 1;
  }

  counterOf(head: number): number {
    const w = (InflightLog.descByte(head) + 8) >> 2;
    return this.u32[w + 1]! * 0x1_0000_0000 + this.u32[w]!;
  }

  get lastBatchHead(): number {
    return this.u16[6]!;
  }

  get usedIdx(): number {
    return this.u16[7]!;
  }

  /**
   * The restart steps, run once when the ring starts with this region. `usedRingIdx` is the used
   * idx in guest memory. Throws InflightRegionError when the region contradicts itself (it came
   * from the frontend: never trusted to index outside the ring).
   */
  recover(usedRingIdx: number): InflightRecovery {
    let fixedUp = 0;
    const stale = (usedRingIdx - this.usedIdx) & 0xffff;
    if (stale !== 0) {
      if (stale > this.size) {
        throw new InflightRegionError(
          `the inflight region's used index ${this.usedIdx} is ${stale} behind the ring's ${usedRingIdx}, more than the ring holds`,
        );
      }
      let head = this.lastBatchHead;
      for (let k = 0; k < stale; k++) {
        if (head >= this.size)
          throw new InflightRegionError(`the inflight region's last batch names descriptor ${head}, past the ring size ${this.size}`);
        const at = InflightLog.descByte(head);
        if (this.u8[at] === 1) fixedUp++;
        Atomics.store(this.u8, at, 0);
        inflightSteps.hook?.('fixup-cleared');
        head = this.u16[(at + 6) >> 1]!;
      }
      Atomics.store(this.u16, 7, usedRingIdx & 0xffff);
      inflightSteps.hook?.('fixup-used-idx');
    }
    const heads: number[] = [];
    let maxCounter = 0;
    for (let h = 0; h < this.size; h++) {
      const flag = this.u8[InflightLog.descByte(h)];
      if (flag === 0) continue;
      if (flag !== 1) throw new InflightRegionError(`the inflight region marks descriptor ${h} with ${flag}, not 0 or 1`);
      heads.push(h);
      maxCounter = Math.max(maxCounter, this.counterOf(h));
    }
    heads.sort((a, b) => this.counterOf(a) - this.counterOf(b));
    this.counter = maxCounter + 1;
    this.batchCount = 0;
    return { resubmit: Uint16Array.from(heads), fixedUp };
  }

  /** The device took chain `head` from the avail ring (or is resubmitting it). */
  markPopped(head: number): void {
    const at = InflightLog.descByte(head);
    const w = (at + 8) >> 2;
    const c = this.counter++;
    this.u32[w] = c >>> 0;
    this.u32[w + 1] = Math.floor(c / 0x1_0000_0000);
    inflightSteps.hook?.('counter');
    Atomics.store(this.u8, at, 1);
    inflightSteps.hook?.('popped');
  }

  /** A used element for `head` was written (not yet published). */
  stageUsed(head: number): void {
    this.u16[(InflightLog.descByte(head) + 6) >> 1] = this.u16[6]!;
    inflightSteps.hook?.('next');
    Atomics.store(this.u16, 6, head);
    inflightSteps.hook?.('staged');
    // Only a guest that reuses heads it has not got back can stage more than the ring holds.
    if (this.batchCount === this.batch.length) {
      const b = new Uint16Array(this.batch.length * 2);
      b.set(this.batch);
      this.batch = b;
    }
    this.batch[this.batchCount++] = head;
  }

  /** used->idx was just published as `usedIdx`: the staged batch is no longer in flight. */
  published(usedIdx: number): void {
    inflightSteps.hook?.('used-published');
    for (let i = 0; i < this.batchCount; i++) {
      Atomics.store(this.u8, InflightLog.descByte(this.batch[i]!), 0);
      inflightSteps.hook?.('cleared');
    }
    this.batchCount = 0;
    Atomics.store(this.u16, 7, usedIdx & 0xffff);
    inflightSteps.hook?.('used-idx');
  }
}
