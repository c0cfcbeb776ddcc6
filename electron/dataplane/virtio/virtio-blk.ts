// virtio-blk on top of a BlockDevice: turns chains from the split rings into batched block
// requests that point straight into guest memory, and completes them with status bytes.
import { availableParallelism } from 'node:os';
import { BlockOp, WRITE_ZEROES_MAY_UNMAP, type BlockDevice } from '../block/types.js';
import { ENOSPC_POLICIES, type EnospcPolicy } from '../../shared/modes.js';
import { GuestMemory } from './guest-memory.js';
import { RingSetupError, SplitVirtqueue } from './split-virtqueue.js';
import type { GuestMemoryRegion, VirtioDevice } from './types.js';
import type { TrackedVringSetup } from './inflight-log.js';
import { EnospcParking, PARKED_TAG, captureData, sameRing, type ParkedRequest, type RingId } from './enospc-parking.js';

export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_TOPOLOGY = 10;
export const VIRTIO_BLK_F_CONFIG_WCE = 11;
export const VIRTIO_BLK_F_MQ = 12;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
export const VIRTIO_RING_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;

export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;
export const VIRTIO_BLK_ID_BYTES = 20;

/** Bytes of struct virtio_blk_config up to write_zeroes_may_unmap and its padding (no secure erase). */
export const VIRTIO_BLK_CONFIG_SIZE = 60;
export const CONFIG_WCE_OFFSET = 32;

const SECTOR = 512;
const ENOSPC = 28;
const EOPNOTSUPP = 95;
/** One discard / write-zeroes range at most per request (as QEMU): Linux splits larger ones. */
const MAX_DWZ_SEGMENTS = 1;
const MAX_DWZ_SECTORS = 65536;
const MAX_PASSES_PER_KICK = 8;

export interface VirtioBlkOptions {
  /** Request queues offered (default: one per host CPU). */
  numQueues?: number;
  /** Serial returned by GET_ID (at most 20 bytes of UTF-8 are sent). */
  serial?: string;
  /** Most data segments per request (config seg_max). QEMU's vhost-user-blk rings hold 128. */
  segMax?: number;
  /** Largest single data segment (config size_max). */
  sizeMax?: number;
  /** What a request failing with ENOSPC does (QEMU's werror): 'stop' (default) parks it and raises
   *  onNoSpace, 'report' completes it with IOERR. */
  enospc?: EnospcPolicy;
  /** The disk's image or device path, for the sentences this device says. */
  diskPath?: string;
  /** Counts, per BlockOp, the requests completed to the guest with IOERR because the block layer
   *  failed them (parked ones are not failed). May be a view of shared memory read by another thread. */
  failureCounts?: Float64Array;
}


/** Requests are parked because the storage is full: the VM should pause until space is freed. */
export interface NoSpaceEvent {
  /** Requests parked now (more may follow until the VM is paused). */
  parked: number;
  /** The bytes they write. */
  parkedBytes: number;
  /** False for the first request parked since space last sufficed; true when a retry met ENOSPC again. */
  retried: boolean;
  sentence: string;
}

/** No parked request is left: they were written, or dropped with the driver that sent them. */
export interface SpaceRecoveredEvent {
  /** Parked requests written since the first was parked. */
  completed: number;
  /** Parked requests dropped unwritten because their driver went away or reset the ring (a
   *  reconnecting frontend resubmits them from its inflight area). */
  dropped: number;
  /** Since the first was parked, ms. */
  waitedMs: number;
}

/** What retryParked() did: requests submitted again, and how many still wait for space afterwards. */
export interface RetryOutcome {
  retried: number;
  parked: number;
}

const bit = (n: number) => 1n << BigInt(n);

/** One request queue: its ring and the preallocated slots of the requests it has in flight. */
class BlkQueue {
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

  constructor(readonly index: number, readonly vq: SplitVirtqueue, readonly ring: RingId) {
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
}

export class VirtioBlkDevice implements VirtioDevice {
  readonly deviceFeatures: bigint;
  readonly numQueues: number;
  onBroken: ((queue: number, reason: string) => void) | null = null;
  /**
   * With enospc 'stop': raised when a first request is parked for lack of space, and again when a
   * retry meets ENOSPC again. The owner pauses the VM and calls retryParked() once space is freed.
   */
  onNoSpace: ((event: NoSpaceEvent) => void) | null = null;
  /** Every parked request has been written (the owner may resume the VM). */
  onSpaceRecovered: ((event: SpaceRecoveredEvent) => void) | null = null;
  /** A queue resubmitted `count` requests a previous backend left in flight (inflight region). */
  onResubmitted: ((queue: number, count: number) => void) | null = null;
  /** Requests resubmitted from inflight regions since construction. */
  resubmittedTotal = 0;

  private readonly blk: BlockDevice;
  private readonly serial = new Uint8Array(VIRTIO_BLK_ID_BYTES);
  private readonly serialLen: number;
  private readonly segMax: number;
  private readonly sizeMax: number;
  private readonly capacityBytes: number;
  private readonly lbs: number;
  private readonly writeCacheDefault: boolean;
  private readonly enospc: EnospcPolicy;
  private readonly diskPath: string;
  private readonly failureCounts: Float64Array | null;
  // Requests that failed with ENOSPC under 'stop', not completed. They live here, not in their
  // queue, so a VM pause (stopQueue, then startQueue on resume) keeps them.
  private readonly parking = new EnospcParking();
  /** The avail index each stopped queue reported (GET_VRING_BASE), to recognise the same ring when it restarts. */
  private readonly stoppedBase: Int32Array;
  /** A new memory table waits for retries in flight: no new retry starts meanwhile. */
  private memoryChanging = false;
  private acked = 0n;
  private mem: GuestMemory | null = null;
  private bytes: Uint8Array[] = [];
  private readonly queues: (BlkQueue | null)[];
  private readonly dirtyList: Uint16Array;
  private dirtyCount = 0;
  private needsReset = false;
  private readonly scratch = new Uint8Array(16);
  private readonly scratchView = new DataView(this.scratch.buffer);

  constructor(blk: BlockDevice, opts: VirtioBlkOptions = {}) {
    this.blk = blk;
    const nq = opts.numQueues ?? availableParallelism();
    if (!Number.isInteger(nq) || nq < 1 || nq > 1024) {
      throw new RangeError(`the number of queues must be an integer from 1 to 1024, not ${nq}`);
    }
    this.numQueues = nq;
    const enospc = opts.enospc ?? 'stop';
    if (!(ENOSPC_POLICIES as readonly unknown[]).includes(enospc)) {
      throw new RangeError(`the ENOSPC policy must be 'stop' or 'report', not ${JSON.stringify(enospc)}`);
    }
    this.enospc = enospc;
    const blkPath = (blk as { path?: unknown }).path;  // BlockBackend has one; the contract does not require it
    this.diskPath = opts.diskPath ?? (typeof blkPath === 'string' ? blkPath : 'the disk image');
    this.segMax = opts.segMax ?? 126;
    this.sizeMax = opts.sizeMax ?? 1 << 20;
    const enc = new TextEncoder().encode(opts.serial ?? '');
    this.serialLen = Math.min(enc.length, VIRTIO_BLK_ID_BYTES);
    this.serial.set(enc.subarray(0, this.serialLen));
    this.lbs = blk.logicalBlockSize;
    if (!(this.lbs >= SECTOR && this.lbs % SECTOR === 0)) {
      throw new RangeError(`the disk's logical block size ${this.lbs} is not a multiple of 512 bytes`);
    }
    this.capacityBytes = Math.floor(blk.sizeBytes / SECTOR) * SECTOR;
    this.writeCacheDefault = blk.writeCache;
    let f = bit(VIRTIO_BLK_F_SIZE_MAX) | bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE)
      | bit(VIRTIO_BLK_F_FLUSH) | bit(VIRTIO_BLK_F_TOPOLOGY) | bit(VIRTIO_BLK_F_CONFIG_WCE) | bit(VIRTIO_BLK_F_MQ)
      | bit(VIRTIO_RING_F_INDIRECT_DESC) | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_F_VERSION_1);
    if (blk.readOnly) f |= bit(VIRTIO_BLK_F_RO);
    if (blk.supportsDiscard && !blk.readOnly) f |= bit(VIRTIO_BLK_F_DISCARD);
    if (blk.supportsWriteZeroes && !blk.readOnly) f |= bit(VIRTIO_BLK_F_WRITE_ZEROES);
    this.deviceFeatures = f;
    this.queues = new Array<BlkQueue | null>(nq).fill(null);
    this.dirtyList = new Uint16Array(nq);
    this.stoppedBase = new Int32Array(nq).fill(-1);
    this.failureCounts = opts.failureCounts ?? null;
    blk.onComplete = (tags, results, count) => this.complete(tags, results, count);
  }

  /** True once a malformed chain stopped a queue (virtio DEVICE_NEEDS_RESET), until reset(). */
  get broken(): boolean {
    return this.needsReset;
  }

  get ackedFeatures(): bigint {
    return this.acked;
  }

  setFeatures(features: bigint): void {
    this.acked = features & this.deviceFeatures;
  }

  private has(feature: number): boolean {
    return (this.acked & bit(feature)) !== 0n;
  }

  readConfig(offset: number, length: number): Uint8Array {
    const cfg = new DataView(new ArrayBuffer(VIRTIO_BLK_CONFIG_SIZE));
    const b = this.blk;
    cfg.setBigUint64(0, BigInt(this.capacityBytes / SECTOR), true);
    cfg.setUint32(8, this.sizeMax, true);
    cfg.setUint32(12, this.segMax, true);
    // 16..19: geometry, left zero (not offered).
    cfg.setUint32(20, this.lbs, true);
    const ratio = Math.max(1, Math.floor(b.physicalBlockSize / this.lbs));
    cfg.setUint8(24, Math.floor(Math.log2(ratio)));
    cfg.setUint8(25, 0);
    cfg.setUint16(26, Math.min(ratio, 0xffff), true);
    cfg.setUint32(28, 0, true);
    cfg.setUint8(CONFIG_WCE_OFFSET, b.writeCache ? 1 : 0);
    cfg.setUint16(34, this.numQueues, true);
    cfg.setUint32(36, MAX_DWZ_SECTORS, true);
    cfg.setUint32(40, MAX_DWZ_SEGMENTS, true);
    cfg.setUint32(44, this.lbs / SECTOR, true);
    cfg.setUint32(48, MAX_DWZ_SECTORS, true);
    cfg.setUint32(52, MAX_DWZ_SEGMENTS, true);
    cfg.setUint8(56, b.supportsDiscard ? 1 : 0);
    const out = new Uint8Array(Math.max(0, length));
    const src = new Uint8Array(cfg.buffer);
    for (let i = 0; i < out.length; i++) {
      const o = offset + i;
      if (o >= 0 && o < VIRTIO_BLK_CONFIG_SIZE) out[i] = src[o];
    }
    return out;
  }

  /** Only the writeback byte is writable; everything else is ignored, as the spec asks. */
  writeConfig(offset: number, data: Uint8Array): void {
    const i = CONFIG_WCE_OFFSET - offset;
    if (i >= 0 && i < data.length) this.blk.writeCache = data[i] !== 0;
  }

  /** Returns a promise only when parked requests being retried must complete first (their I/O
   *  points into the current table, which the transport unmaps after this). */
  setMemory(regions: GuestMemoryRegion[]): void | Promise<void> {
    for (const q of this.queues) {
      if (q && q.inFlight > 0) throw new Error('guest memory cannot change while requests are in flight: stop the queues first');
    }
    if (this.parking.retrying > 0) {
      this.memoryChanging = true;
      return this.parking.settled().then(() => {
        this.memoryChanging = false;
        this.swapMemory(regions);
      }, (err: unknown) => {
        this.memoryChanging = false;
        throw err;
      });
    }
    this.swapMemory(regions);
  }

  private swapMemory(regions: GuestMemoryRegion[]): void {
    const mem = new GuestMemory(regions);
    this.unregisterMemory();
    mem.regions.forEach((r, id) => this.blk.registerBuffer(id, r.memory));
    this.mem = mem;
    this.bytes = mem.regions.map((r) => r.memory.subarray(0, r.size));
  }

  private unregisterMemory(): void {
    if (!this.mem) return;
    for (let id = 0; id < this.mem.regions.length; id++) this.blk.unregisterBuffer(id);
    this.mem = null;
    this.bytes = [];
  }

  /** With `setup.inflight` (INFLIGHT_SHMFD), every chain is tracked there and the chains a previous
   *  backend left in flight are resubmitted at the first kick, before any new one. */
  startQueue(index: number, setup: TrackedVringSetup): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.numQueues) {
      throw new RangeError(`queue ${index} does not exist: this disk has ${this.numQueues} queues`);
    }
    const old = this.queues[index];
    if (old && old.inFlight > 0) throw new Error(`queue ${index} is still running: stop it first`);
    this.queues[index] = null;
    if (!this.mem) {
      this.fail(index, 'the ring was started before the guest memory table was set');
      return;
    }
    let vq: SplitVirtqueue;
    try {
      vq = new SplitVirtqueue(this.mem, setup, {
        eventIdx: this.has(VIRTIO_RING_F_EVENT_IDX),
        indirect: this.has(VIRTIO_RING_F_INDIRECT_DESC),
        maxIndirect: this.segMax + 2,
      });
    } catch (err) {
      if (!(err instanceof RingSetupError)) throw err;
      this.fail(index, err.message);
      return;
    }
    const ring: RingId = { descAddr: setup.descAddr, availAddr: setup.availAddr, usedAddr: setup.usedAddr, size: setup.size };
    const q = new BlkQueue(index, vq, ring);
    this.queues[index] = q;
    const base = this.stoppedBase[index]!;
    this.stoppedBase[index] = -1;
    if (this.parking.size > 0) this.adoptParked(q, base === (setup.lastAvailIdx & 0xffff));
  }

  kick(index: number): void {
    const q = this.queues[index];
    if (!q || q.stopped || q.broken) return;
    this.drain(q);
  }

  async stopQueue(index: number): Promise<number> {
    const q = this.queues[index];
    if (!q) return 0;
    q.stopped = true;
    if (q.inFlight > 0) await new Promise<void>((resolve) => q.drained.push(resolve));
    if (this.queues[index] === q) {
      this.queues[index] = null;
      this.stoppedBase[index] = q.vq.lastAvailIdx;
    }
    return q.vq.lastAvailIdx;
  }

  async reset(): Promise<void> {
    await Promise.all(this.queues.map((q, i) => (q ? this.stopQueue(i) : 0)));
    // The driver is gone: parked requests go with it (a reconnecting frontend resubmits what it
    // never saw completed from its inflight area). Retries in flight finish first: their memory goes next.
    this.parking.clear();
    await this.parking.settled();
    this.raisePending();
    this.unregisterMemory();
    this.stoppedBase.fill(-1);
    this.acked = 0n;
    this.needsReset = false;
    this.blk.writeCache = this.writeCacheDefault;
  }

  // ---- request path -------------------------------------------------------------------------

  private drain(q: BlkQueue): void {
    const vq = q.vq;
    q.batchCount = 0;
    let passes = 0;
    try {
      if (vq.pendingResubmits > 0) this.resubmit(q);
      outer: for (;;) {
        if (q.broken) break;
        const n = vq.available();
        if (n < 0) {
          this.breakQueue(q, vq.error);
          break;
        }
        for (let k = 0; k < n; k++) {
          const head = vq.pop();
          if (head < 0 || !this.handleChain(q, head)) {
            if (!q.broken) this.breakQueue(q, vq.error);
            break outer;
          }
        }
        if (!vq.armKick()) break;
        // A guest that keeps refilling the ring must not hold this thread: yield, then go on.
        if (++passes === MAX_PASSES_PER_KICK) {
          setImmediate(() => this.kick(q.index));
          break;
        }
      }
    } catch (err) {
      // Every guest-controlled access is checked before it is made: reaching this is a bug in
      // Spindle, reported as such, and it still only stops this queue.
      this.breakQueue(q, `internal error while reading the ring (${(err as Error).message})`);
    }
    this.submitBatch(q);
  }

  private submitBatch(q: BlkQueue): void {
    if (q.batchCount > 0) {
      try {
        this.blk.submit();
      } catch (err) {
        this.failBatch(q, err as Error);
      }
    }
    q.vq.publishUsed();
  }

  // ---- ENOSPC policy 'stop' (the records live in enospc-parking.ts) -------------------------

  /** Requests waiting for space, or being retried (enospc 'stop'). */
  get parkedRequests(): number {
    return this.parking.parked.count;
  }

  /** The bytes the parked requests write. */
  get parkedBytes(): number {
    return this.parking.parked.bytes;
  }

  /**
   * Submits every parked request again now (space was freed, or the owner asks), whether or not its
   * ring runs: one written while its ring is stopped reaches the guest when the ring starts again.
   * One that meets ENOSPC again is parked again and raises onNoSpace (retried). Resolves when they
   * have all completed, with how many were retried and how many still wait.
   */
  async retryParked(): Promise<RetryOutcome> {
    if (!this.mem || this.memoryChanging) return { retried: 0, parked: this.parkedRequests };
    const { submitted, lost } = this.parking.retry(this.mem, this.blk);
    // Its memory is no longer guest memory (a new memory table): like a malformed chain, it fails.
    for (const r of lost) this.settleParked(r, VIRTIO_BLK_S_IOERR);
    this.publishDirty();
    this.raisePending();
    await this.parking.settled();  // these, and any retry already in flight
    return { retried: submitted, parked: this.parkedRequests };
  }

  /** A request failed with ENOSPC: keep what is needed to retry it, and give its slot back. */
  private park(q: BlkQueue, slot: number): void {
    const head = q.head[slot]!;
    const op = q.op[slot] as BlockOp;
    const segments = captureData(q.vq, this.mem!, head, op, q.length[slot]!);
    q.free[q.freeCount++] = slot;
    q.inFlight--;
    if (!segments) {
      // The guest rewrote the chain while it was in flight: it cannot be retried as it was asked.
      this.bytes[q.statusRegion[slot]][q.statusOffset[slot]] = VIRTIO_BLK_S_IOERR;
      q.vq.pushUsed(head, q.usedLen[slot]);
      this.countFailure(op);
      return;
    }
    this.parking.add({
      queue: q.index, head, ring: q.ring, op, offset: q.offset[slot]!, length: q.length[slot]!, flags: q.flags[slot]!,
      segments, statusAddr: this.mem!.regions[q.statusRegion[slot]].guestAddr + q.statusOffset[slot]!, usedLen: q.usedLen[slot]!,
    });
  }

  /** A parked request is settled with `status`: now if its ring runs, else when it starts again. */
  private settleParked(rec: ParkedRequest, status: number): void {
    rec.state = 'done';
    rec.status = status;
    if (status === VIRTIO_BLK_S_IOERR) this.countFailure(rec.op);
    const q = this.queues[rec.queue];
    if (q && !q.stopped && !q.broken && sameRing(q.ring, rec.ring)) this.deliverParked(q, rec);
  }

  /** Gives the guest a settled parked request: its status byte, then its own head on the used ring. */
  private deliverParked(q: BlkQueue, rec: ParkedRequest): void {
    this.parking.remove(rec);
    const r = this.mem ? this.mem.find(rec.statusAddr, 1) : -1;
    if (r < 0) {
      this.breakQueue(q, `the status byte of parked request ${rec.head} at 0x${rec.statusAddr.toString(16)} is no longer in guest memory`);
      return;
    }
    this.bytes[r][this.mem!.offset(r, rec.statusAddr)] = rec.status;
    q.vq.pushUsed(rec.head, rec.usedLen);
    if (!q.dirty) {
      q.dirty = true;
      this.dirtyList[this.dirtyCount++] = q.index;
    }
  }

  /**
   * A ring started: the parked requests taken from it are this device's own again. The same ring
   * (same addresses; the base it was stopped at, or, with an inflight region, still marked in flight
   * there) keeps them, and they must not be resubmitted from the inflight region a second time; a
   * ring set up anew (the driver reset it) drops them, as QEMU drops requests on a device reset.
   */
  private adoptParked(q: BlkQueue, sameBase: boolean): void {
    const log = q.vq.inflight;
    for (const rec of this.parking.forQueue(q.index)) {
      const same = sameRing(rec.ring, q.ring) && (log ? log.isInflight(rec.head) : sameBase);
      if (!same) {
        this.parking.drop(rec);
        continue;
      }
      if (log) q.vq.dropResubmit(rec.head);
      if (rec.state === 'done') this.deliverParked(q, rec);
    }
    this.publishDirty();
    this.raisePending();
  }

  private completeParked(id: number, result: number): void {
    const rec = this.parking.completed(id, result);
    if (!rec || rec.state !== 'done') return;
    this.settleParked(rec, result === 0 ? VIRTIO_BLK_S_OK : result === -EOPNOTSUPP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR);
  }

  /** Raises what the parking saw, after the batch that caused it is published. */
  private raisePending(): void {
    const { noSpace, recovered } = this.parking.takeEvents();
    if (noSpace) {
      const n = noSpace.parked;
      const sentence = `The filesystem holding ${this.diskPath} is full: ${n} write${n === 1 ? '' : 's'} wait${n === 1 ? 's' : ''} until space is freed.`;
      if (this.onNoSpace) this.onNoSpace({ ...noSpace, sentence });
      else console.warn(`spindle: virtio-blk: ${sentence}`);
    }
    if (recovered) this.onSpaceRecovered?.(recovered);
  }

  private countFailure(op: number): void {
    if (this.failureCounts && op < this.failureCounts.length) this.failureCounts[op]!++;
  }

  /** Hands the chains a previous backend took but never completed to the block layer again,
   *  oldest first (the frontend's inflight region says which). */
  private resubmit(q: BlkQueue): void {
    const vq = q.vq;
    let count = 0;
    while (vq.pendingResubmits > 0) {
      const head = vq.popResubmit();
      if (head < 0 || !this.handleChain(q, head)) {
        if (!q.broken) this.breakQueue(q, vq.error);
        break;
      }
      count++;
    }
    this.resubmittedTotal += count;
    if (count > 0) this.onResubmitted?.(q.index, count);
  }

  /** Handles one chain. Returns false when the chain is malformed (vq.error or the queue set). */
  private handleChain(q: BlkQueue, head: number): boolean {
    const vq = q.vq;
    if (vq.readableBytes < 16) {
      vq.error = vq.readableBytes === 0 && vq.writableBytes > 0
        ? `the request header of chain ${head} is in a device-writable descriptor`
        : `the request header of chain ${head} is ${vq.readableBytes} bytes, shorter than 16`;
      return false;
    }
    if (vq.writableBytes === 0) {
      vq.error = `chain ${head} has no device-writable status byte`;
      return false;
    }
    // The status byte is the last writable byte; writable parts come last in the chain.
    const last = vq.segCount - 1;
    const statusRegion = vq.segRegion[last];
    const statusOffset = vq.segOffset[last] + vq.segLen[last] - 1;

    let type: number, sectorLo: number, sectorHi: number;
    if (vq.segLen[0] >= 16 && vq.segWritable[0] === 0) {
      const v = this.mem!.views[vq.segRegion[0]];
      const o = vq.segOffset[0];
      type = v.getUint32(o, true);
      sectorLo = v.getUint32(o + 8, true);
      sectorHi = v.getUint32(o + 12, true);
    } else {
      this.copyFromChain(vq, 0, 16);
      type = this.scratchView.getUint32(0, true);
      sectorLo = this.scratchView.getUint32(8, true);
      sectorHi = this.scratchView.getUint32(12, true);
    }

    const dataOut = vq.readableBytes - 16;
    const dataIn = vq.writableBytes - 1;
    switch (type) {
      case VIRTIO_BLK_T_IN: {
        if (dataOut > 0) {
          vq.error = `read request ${head} has its data buffer in a device-readable descriptor`;
          return false;
        }
        if (!this.rangeOk(sectorLo, sectorHi, dataIn)) return this.finish(q, head, statusRegion, statusOffset, VIRTIO_BLK_S_IOERR, 1);
        if (dataIn === 0) return this.finish(q, head, statusRegion, statusOffset, VIRTIO_BLK_S_OK, 1);
        const offset = (sectorHi * 0x1_0000_0000 + sectorLo) * SECTOR;
        if (!this.begin(q, head, statusRegion, statusOffset, vq.writableBytes, BlockOp.Read, offset, dataIn, 0)) return false;
        this.emitSegments(vq, 1, 0, dataIn);
        return true;
      }
      case VIRTIO_BLK_T_OUT: {
        if (dataIn > 0) {
          vq.error = `write request ${head} has its data buffer in a device-writable descriptor`;
          return false;
        }
        if (this.blk.readOnly || !this.rangeOk(sectorLo, sectorHi, dataOut)) {
          return this.finish(q, head, statusRegion, statusOffset, VIRTIO_BLK_S_IOERR, 1);
        }
        if (dataOut === 0) return this.finish(q, head, statusRegion, statusOffset, VIRTIO_BLK_S_OK, 1);
        const offset = (sectorHi * 0x1_0000_0000 + sectorLo) * SECTOR;
        if (!this.begin(q, head, statusRegion, statusOffset, 1, BlockOp.Write, offset, dataOut, 0)) return false;
        this.emitSegments(vq, 0, 16, dataOut);
        return true;
      }
      case VIRTIO_BLK_T_FLUSH: {
        return this.begin(q, head, statusRegion, statusOffset, 1, BlockOp.Flush, 0, 0, 0);
      }
      case VIRTIO_BLK_T_GET_ID: {
        const n = Math.min(dataIn, VIRTIO_BLK_ID_BYTES);
        this.copyToChain(vq, n);
        return this.finish(q, head, statusRegion, statusOffset, VIRTIO_BLK_S_OK, n + 1);
      }
      case VIRTIO_BLK_T_DISCARD:
      case VIRTIO_BLK_T_WRITE_ZEROES:
        return this.discardOrZeroes(q, head, type, statusRegion, statusOffset, dataOut);
      default:
        return this.finish(q, head, statusRegion, statusOffset, VIRTIO_BLK_S_UNSUPP, 1);
    }
  }

  private discardOrZeroes(q: BlkQueue, head: number, type: number, sRegion: number, sOffset: number, payload: number): boolean {
    const zeroes = type === VIRTIO_BLK_T_WRITE_ZEROES;
    if (!this.has(zeroes ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD)) {
      return this.finish(q, head, sRegion, sOffset, VIRTIO_BLK_S_UNSUPP, 1);
    }
    if (this.blk.readOnly || payload === 0 || payload % 16 !== 0) {
      return this.finish(q, head, sRegion, sOffset, VIRTIO_BLK_S_IOERR, 1);
    }
    if (payload / 16 > MAX_DWZ_SEGMENTS) return this.finish(q, head, sRegion, sOffset, VIRTIO_BLK_S_UNSUPP, 1);
    this.copyFromChain(q.vq, 16, 16);
    const s = this.scratchView;
    const lo = s.getUint32(0, true);
    const hi = s.getUint32(4, true);
    const sectors = s.getUint32(8, true);
    const flags = s.getUint32(12, true);
    // Discard takes no flags; write-zeroes knows only UNMAP (virtio 1.2, 5.2.6.2).
    if (flags & ~(zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0)) {
      return this.finish(q, head, sRegion, sOffset, VIRTIO_BLK_S_UNSUPP, 1);
    }
    if (sectors > MAX_DWZ_SECTORS || !this.rangeOk(lo, hi, sectors * SECTOR)) {
      return this.finish(q, head, sRegion, sOffset, VIRTIO_BLK_S_IOERR, 1);
    }
    if (sectors === 0) return this.finish(q, head, sRegion, sOffset, VIRTIO_BLK_S_OK, 1);
    return this.begin(q, head, sRegion, sOffset, 1, zeroes ? BlockOp.WriteZeroes : BlockOp.Discard,
      (hi * 0x1_0000_0000 + lo) * SECTOR, sectors * SECTOR,
      zeroes && flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ? WRITE_ZEROES_MAY_UNMAP : 0);
  }

  /** A sector range is served only if it lies inside the disk and is aligned to its logical block. */
  private rangeOk(lo: number, hi: number, bytes: number): boolean {
    if (hi >= 0x200000) return false; // sector * 512 would pass 2^62 bytes: far past any disk
    const start = (hi * 0x1_0000_0000 + lo) * SECTOR;
    if (start > this.capacityBytes || bytes > this.capacityBytes - start) return false;
    return start % this.lbs === 0 && bytes % this.lbs === 0;
  }

  /** Takes a slot for the request and begins it in the block layer (Read and Write data segments
   *  follow). `length` is its data bytes (Read, Write) or its range (Discard, WriteZeroes). False
   *  when the guest has more requests in flight than its ring holds (vq.error set). */
  private begin(q: BlkQueue, head: number, sRegion: number, sOffset: number, usedLen: number,
    op: BlockOp, offset: number, length: number, flags: number): boolean {
    if (q.freeCount === 0) {
      q.vq.error = `the guest has more requests in flight than the ring's ${q.vq.size} descriptors`;
      return false;
    }
    const slot = q.free[--q.freeCount];
    q.head[slot] = head;
    q.usedLen[slot] = usedLen;
    q.statusRegion[slot] = sRegion;
    q.statusOffset[slot] = sOffset;
    q.op[slot] = op;
    q.offset[slot] = offset;
    q.length[slot] = length;
    q.flags[slot] = flags;
    q.inFlight++;
    q.batch[q.batchCount++] = slot;
    const segmented = op === BlockOp.Read || op === BlockOp.Write;
    this.blk.begin(((q.index << 16) | slot) >>> 0, op, offset, segmented ? 0 : length, flags);
    return true;
  }

  /** Completes a request without the block layer. */
  private finish(q: BlkQueue, head: number, sRegion: number, sOffset: number, status: number, usedLen: number): true {
    this.bytes[sRegion][sOffset] = status;
    q.vq.pushUsed(head, usedLen);
    return true;
  }

  /** Hands `length` bytes of the chain's readable (writable=0) or writable (1) parts, after `skip`
   *  bytes, to the request begun last. */
  private emitSegments(vq: SplitVirtqueue, writable: number, skip: number, length: number): void {
    for (let k = 0; k < vq.segCount && length > 0; k++) {
      if (vq.segWritable[k] !== writable) continue;
      let len = vq.segLen[k];
      let off = vq.segOffset[k];
      if (skip >= len) {
        skip -= len;
        continue;
      }
      off += skip;
      len -= skip;
      skip = 0;
      if (len > length) len = length;
      this.blk.segment(vq.segRegion[k], off, len);
      length -= len;
    }
  }

  /** Copies `length` (<= 16) readable bytes from stream position `from` into scratch. */
  private copyFromChain(vq: SplitVirtqueue, from: number, length: number): void {
    let j = 0;
    for (let k = 0; k < vq.segCount && j < length; k++) {
      if (vq.segWritable[k]) break;
      const len = vq.segLen[k];
      if (from >= len) {
        from -= len;
        continue;
      }
      const src = this.bytes[vq.segRegion[k]];
      const o = vq.segOffset[k];
      for (let i = from; i < len && j < length; i++) this.scratch[j++] = src[o + i];
      from = 0;
    }
  }

  /** Writes the first n serial bytes (NUL padded) to the start of the writable parts. */
  private copyToChain(vq: SplitVirtqueue, n: number): void {
    let j = 0;
    for (let k = 0; k < vq.segCount && j < n; k++) {
      if (!vq.segWritable[k]) continue;
      const dst = this.bytes[vq.segRegion[k]];
      const o = vq.segOffset[k];
      for (let i = 0; i < vq.segLen[k] && j < n; i++, j++) dst[o + i] = j < this.serialLen ? this.serial[j] : 0;
    }
  }

  private complete(tags: Uint32Array, results: Int32Array, count: number): void {
    for (let i = 0; i < count; i++) {
      const tag = tags[i];
      const r = results[i];
      if (tag & PARKED_TAG) {
        this.completeParked(tag & ~PARKED_TAG, r);
        continue;
      }
      const q = this.queues[tag >>> 16];
      const slot = tag & 0xffff;
      if (!q || slot >= q.vq.size) continue;
      if (r === -ENOSPC && this.enospc === 'stop') this.park(q, slot);
      else {
        this.bytes[q.statusRegion[slot]][q.statusOffset[slot]] =
          r === 0 ? VIRTIO_BLK_S_OK : r === -EOPNOTSUPP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR;
        if (r !== 0 && r !== -EOPNOTSUPP) this.countFailure(q.op[slot]);
        q.vq.pushUsed(q.head[slot], q.usedLen[slot]);
        q.free[q.freeCount++] = slot;
        q.inFlight--;
      }
      if (!q.dirty) {
        q.dirty = true;
        this.dirtyList[this.dirtyCount++] = q.index;
      }
    }
    this.publishDirty();
    this.raisePending();
  }

  /** Publishes the used entries of every queue touched since the last call; wakes stopQueue waiters. */
  private publishDirty(): void {
    const n = this.dirtyCount;
    this.dirtyCount = 0;
    for (let d = 0; d < n; d++) {
      const q = this.queues[this.dirtyList[d]];
      if (!q || !q.dirty) continue;
      q.dirty = false;
      q.vq.publishUsed();
      if (q.inFlight === 0 && q.drained.length) for (const resolve of q.drained.splice(0)) resolve();
    }
  }

  /** submit() threw: the block layer took none of the batch, so every request in it fails. */
  private failBatch(q: BlkQueue, err: Error): void {
    for (let i = 0; i < q.batchCount; i++) {
      const slot = q.batch[i];
      this.bytes[q.statusRegion[slot]][q.statusOffset[slot]] = VIRTIO_BLK_S_IOERR;
      this.countFailure(q.op[slot]);
      q.vq.pushUsed(q.head[slot], q.usedLen[slot]);
      q.free[q.freeCount++] = slot;
      q.inFlight--;
    }
    q.batchCount = 0;
    console.error(`spindle: queue ${q.index}: the block layer refused a batch: ${err.message}`);
    if (q.inFlight === 0 && q.drained.length) for (const resolve of q.drained.splice(0)) resolve();
  }

  private breakQueue(q: BlkQueue, reason: string): void {
    q.broken = true;
    this.fail(q.index, reason);
  }

  private fail(index: number, reason: string): void {
    this.needsReset = true;
    const sentence = `Queue ${index} stopped: ${reason}.`;
    if (this.onBroken) this.onBroken(index, sentence);
    else console.warn(`spindle: virtio-blk: ${sentence}`);
  }
}
