// One virtqueue of the load generator: its ring (DriverRing) and its iodepth request slots, each
// preallocated in guest memory (16-byte header, status byte, data buffer); issues a request per
// free slot, and on the call eventfd collects completions, records them and refills.
import { performance } from 'node:perf_hooks';
import { DriverRing } from './driver-ring.js';
import { VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT } from '../dataplane/virtio/virtio-blk.js';
import type { LatencyHistogram } from './latency-histogram.js';
import type { LoadgenOptions } from './loadgen-options.js';
import { Rng } from './rng.js';
import { checkPattern, fillPattern } from './verify-pattern.js';
import type { SharedGuestMemory, VringHandle } from './vhost-user-frontend.js';

export const enum Phase {
  Run,
  VerifyWrite,
  VerifyRead,
}

/** What a queue asks of the load generator that owns it (loadgen.ts), and the counts it keeps there. */
export interface QueueOwner {
  readonly opts: LoadgenOptions;
  readonly latency: LatencyHistogram;
  readonly phase: Phase;
  /** Writes carry the verify pattern. */
  readonly patterned: boolean;
  inFlight: number;
  reads: number;
  writes: number;
  errors: number;
  verified: number;
  mismatches: number;
  firstMismatch: number | null;
  /** The next block for queue q to request, or -1 when it has nothing more to issue. */
  nextBlock(q: QueueDriver): number;
  isRead(q: QueueDriver): boolean;
  /** Queue q's share of the region, as [first block, end). */
  stripe(q: QueueDriver): [number, number];
  /** Called after each completion batch. */
  progress(): void;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** One virtqueue and its iodepth request slots. */
export class QueueDriver {
  readonly ring: DriverRing;
  handle: VringHandle | null = null;
  private readonly slotOfHead: Int32Array;
  private readonly startedAt: Float64Array;
  private readonly slotOffset: Float64Array;
  private readonly slotIsRead: Uint8Array;
  private readonly hdrAddr: Float64Array;
  private readonly dataAddr: Float64Array;
  private readonly hdrView: DataView;
  private readonly status: Uint8Array;
  private readonly words: Uint32Array;
  private readonly rng: Rng;
  /** Position in this queue's stripe during a pass, and the stride that orders it. */
  private cursor = 0;
  private stride = 1;
  /** Sequential passes completed over this queue's stripe (for LoadgenOptions.passes). */
  passesDone = 0;
  /** Random requests issued in the run (for LoadgenOptions.passes). */
  randomIssued = 0;
  private readonly onUsedBound: (head: number, len: number) => void;

  constructor(
    private readonly lg: QueueOwner,
    readonly index: number,
    mem: SharedGuestMemory,
    ringAt: number,
    ringSize: number,
    eventIdx: boolean,
    slotsAt: number,
    dataAt: number,
  ) {
    const o = lg.opts;
    this.ring = new DriverRing(mem.memory, mem.guestAddr, ringAt, ringSize, { eventIdx });
    this.slotOfHead = new Int32Array(ringSize).fill(-1);
    this.startedAt = new Float64Array(o.iodepth);
    this.slotOffset = new Float64Array(o.iodepth);
    this.slotIsRead = new Uint8Array(o.iodepth);
    this.hdrAddr = new Float64Array(o.iodepth);
    this.dataAddr = new Float64Array(o.iodepth);
    for (let s = 0; s < o.iodepth; s++) {
      this.hdrAddr[s] = slotsAt + 32 * s; // 16-byte header, status byte at +16
      this.dataAddr[s] = dataAt + o.bs * s;
    }
    // mem.memory may start at an offset inside its ArrayBuffer (mapped inside V8's heap).
    const { buffer, byteOffset, byteLength } = mem.memory;
    this.hdrView = new DataView(buffer, byteOffset, byteLength);
    this.status = mem.memory;
    this.words = new Uint32Array(buffer, byteOffset, byteLength >>> 2);
    this.rng = new Rng((o.seed * 7919 + index * 104729 + 1) >>> 0);
    this.onUsedBound = (head, len) => this.onUsed(head, len);
  }

  /** Starts a request in every free slot and kicks once. */
  fill(): void {
    for (let s = 0; s < this.lg.opts.iodepth; s++) if (!this.issue(s)) break;
    this.flush();
  }

  private flush(): void {
    if (this.ring.publish()) this.handle!.kick();
  }

  /** Puts one request in slot s on the ring; false when the workload has nothing more to issue. */
  private issue(s: number): boolean {
    const lg = this.lg;
    const block = lg.nextBlock(this);
    if (block < 0) return false;
    const bs = lg.opts.bs;
    const offset = block * bs;
    const read = lg.isRead(this);
    const hdr = this.hdrAddr[s];
    this.hdrView.setUint32(hdr, read ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, true);
    this.hdrView.setUint32(hdr + 4, 0, true);
    const sector = offset / 512;
    this.hdrView.setUint32(hdr + 8, sector % 0x1_0000_0000, true);
    this.hdrView.setUint32(hdr + 12, Math.floor(sector / 0x1_0000_0000), true);
    this.status[hdr + 16] = 0xff;
    if (!read && lg.patterned) fillPattern(this.words, this.dataAddr[s] / 4, bs / 4, lg.opts.seed, offset);
    const head = this.ring.addRequest(hdr, this.dataAddr[s], bs, read, hdr + 16);
    if (head < 0) throw new Error('loadgen: ring full (slot accounting bug)');
    this.slotOfHead[head] = s;
    this.slotOffset[s] = offset;
    this.slotIsRead[s] = read ? 1 : 0;
    this.startedAt[s] = performance.now();
    lg.inFlight++;
    return true;
  }

  /** The call eventfd fired: collect, refill, kick once. */
  onCall(): void {
    this.ring.collect(this.onUsedBound);
    this.flush();
    this.lg.progress();
  }

  /** Queue s (after collect) for reissue; called once per used entry. */
  private onUsed(head: number, _len: number): void {
    const s = this.slotOfHead[head];
    if (s < 0) throw new Error(`loadgen: the backend completed descriptor ${head}, which is not a request head`);
    this.slotOfHead[head] = -1;
    const lg = this.lg;
    lg.inFlight--;
    lg.latency.add((performance.now() - this.startedAt[s]) * 1e6);
    const st = this.status[this.hdrAddr[s] + 16];
    const read = this.slotIsRead[s] === 1;
    if (read) lg.reads++;
    else lg.writes++;
    if (st !== 0) lg.errors++;
    else if (read && lg.phase === Phase.VerifyRead) {
      lg.verified++;
      if (!checkPattern(this.words, this.dataAddr[s] / 4, lg.opts.bs / 4, lg.opts.seed, this.slotOffset[s])) {
        if (lg.mismatches++ === 0) lg.firstMismatch = this.slotOffset[s];
      }
    }
    this.issue(s);
  }

  /** Starts a pass over this queue's stripe [start, end): in order, or (shuffled) in an order
   *  that visits every block once, stepping by a stride coprime with the stripe length. */
  startPass(shuffled: boolean): void {
    const [start, end] = this.lg.stripe(this);
    const n = end - start;
    this.cursor = 0;
    this.stride = 1;
    if (shuffled && n > 2) {
      let p = Math.floor(n * 0.6180339887) | 1;
      while (gcd(p, n) !== 1) p += 2;
      this.stride = p;
    }
  }

  /** The next block of the pass, or -1 once every block of the stripe was visited. */
  nextInPass(): number {
    const [start, end] = this.lg.stripe(this);
    const n = end - start;
    if (this.cursor >= n) return -1;
    return start + ((this.cursor++ * this.stride) % n);
  }

  randomBlock(n: number): number {
    return this.rng.below(n);
  }

  randomPercent(): number {
    return this.rng.next() % 100;
  }
}
