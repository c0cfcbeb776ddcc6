// virtio-blk on top of a BlockDevice: turns chains from the split rings into batched block
// requests that point straight into guest memory, and completes them with status bytes.
import { availableParallelism } from 'node:os';
import type { BlockDevice } from '../block/types.js';
import { ENOSPC_POLICIES, type EnospcPolicy } from '../../shared/modes.js';
import { GuestMemory } from './guest-memory.js';
import { RingSetupError, SplitVirtqueue } from './split-virtqueue.js';
import type { GuestMemoryRegion, VirtioDevice } from './types.js';
import type { TrackedVringSetup } from './inflight-log.js';
import { EnospcParking, PARKED_TAG, type RingId } from './enospc-parking.js';
import { BlkParking } from './blk-parking.js';
import {
  CONFIG_WCE_OFFSET,
  SECTOR,
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_CONFIG_WCE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_MQ,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_SIZE_MAX,
  VIRTIO_BLK_F_TOPOLOGY,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  configWindow,
  encodeBlkConfig,
} from './blk-config.js';
import type { NoSpaceEvent, RetryOutcome, SpaceRecoveredEvent, VirtioBlkOptions } from './blk-events.js';
import { BlkRequestHandler } from './blk-handler.js';
import { BlkQueue, DirtyQueues, blkStatus } from './blk-queue.js';
import { describeQueueFault, type QueueFault } from './queue-fault.js';

export * from './blk-config.js';
export type { NoSpaceEvent, RetryOutcome, SpaceRecoveredEvent, VirtioBlkOptions } from './blk-events.js';
export type { BlkRequestError } from './blk-request.js';
export type { QueueFault } from './queue-fault.js';

const ENOSPC = 28;
const MAX_PASSES_PER_KICK = 8;

const bit = (n: number) => 1n << BigInt(n);

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
  private capacityBytes: number;
  private readonly lbs: number;
  private readonly writeCacheDefault: boolean;
  private readonly enospc: EnospcPolicy;
  private readonly diskPath: string;
  private readonly failureCounts: Float64Array | null;
  // Requests that failed with ENOSPC under 'stop', not completed. They live here, not in their
  // queue, so a VM pause (stopQueue, then startQueue on resume) keeps them.
  private readonly parking = new EnospcParking();
  private readonly parked: BlkParking;
  /** The avail index each stopped queue reported (GET_VRING_BASE), to recognise the same ring when it restarts. */
  private readonly stoppedBase: Int32Array;
  /** A new memory table waits for retries in flight: no new retry starts meanwhile. */
  private memoryChanging = false;
  private acked = 0n;
  private mem: GuestMemory | null = null;
  private bytes: Uint8Array[] = [];
  private readonly queues: (BlkQueue | null)[];
  private readonly dirty: DirtyQueues;
  private needsReset = false;
  private readonly handler: BlkRequestHandler;
  private lastFault: QueueFault | null = null;

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
    const blkPath = (blk as { path?: unknown }).path; // BlockBackend has one; the contract does not require it
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
    let f =
      bit(VIRTIO_BLK_F_SIZE_MAX) |
      bit(VIRTIO_BLK_F_SEG_MAX) |
      bit(VIRTIO_BLK_F_BLK_SIZE) |
      bit(VIRTIO_BLK_F_FLUSH) |
      bit(VIRTIO_BLK_F_TOPOLOGY) |
      bit(VIRTIO_BLK_F_CONFIG_WCE) |
      bit(VIRTIO_BLK_F_MQ) |
      bit(VIRTIO_RING_F_INDIRECT_DESC) |
      bit(VIRTIO_RING_F_EVENT_IDX) |
      bit(VIRTIO_F_VERSION_1);
    if (blk.readOnly) f |= bit(VIRTIO_BLK_F_RO);
    if (blk.supportsDiscard && !blk.readOnly) f |= bit(VIRTIO_BLK_F_DISCARD);
    if (blk.supportsWriteZeroes && !blk.readOnly) f |= bit(VIRTIO_BLK_F_WRITE_ZEROES);
    this.deviceFeatures = f;
    this.queues = new Array<BlkQueue | null>(nq).fill(null);
    this.dirty = new DirtyQueues(nq);
    this.stoppedBase = new Int32Array(nq).fill(-1);
    this.failureCounts = opts.failureCounts ?? null;
    this.parked = new BlkParking(
      {
        memory: () => this.mem,
        bytes: () => this.bytes,
        queue: (i) => this.queues[i] ?? null,
        markDirty: (q) => this.dirty.mark(q),
        breakQueue: (q, fault) => this.breakQueue(q, fault),
        countFailure: (op) => this.countFailure(op),
      },
      this.parking,
    );
    this.handler = new BlkRequestHandler(blk, this.capacityBytes, this.lbs, this.serial, this.serialLen);
    blk.onComplete = (tags, results, count) => this.complete(tags, results, count);
  }

  /** True once a malformed chain stopped a queue (virtio DEVICE_NEEDS_RESET), until reset(). */
  get broken(): boolean {
    return this.needsReset;
  }

  /** Why a queue last stopped (what onBroken's sentence says), until reset(). */
  get fault(): QueueFault | null {
    return this.lastFault;
  }

  get ackedFeatures(): bigint {
    return this.acked;
  }

  setFeatures(features: bigint): void {
    this.acked = features & this.deviceFeatures;
    this.handler.acked = this.acked;
  }

  private has(feature: number): boolean {
    return (this.acked & bit(feature)) !== 0n;
  }

  readConfig(offset: number, length: number): Uint8Array {
    const b = this.blk;
    const config = encodeBlkConfig({
      capacityBytes: this.capacityBytes,
      sizeMax: this.sizeMax,
      segMax: this.segMax,
      logicalBlockSize: this.lbs,
      physicalBlockSize: b.physicalBlockSize,
      writeCache: b.writeCache,
      numQueues: this.numQueues,
      supportsDiscard: b.supportsDiscard,
    });
    return configWindow(config, offset, length);
  }

  /** The disk grew (BlockDevice.resize): requests may reach the new end, and the config space says
   *  so; the transport then tells the guest (vhost-user BACKEND_CONFIG_CHANGE_MSG). */
  setCapacity(bytes: number): void {
    this.capacityBytes = Math.floor(bytes / SECTOR) * SECTOR;
    this.handler.capacityBytes = this.capacityBytes;
  }

  get capacity(): number {
    return this.capacityBytes;
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
      return this.parking.settled().then(
        () => {
          this.memoryChanging = false;
          this.swapMemory(regions);
        },
        (err: unknown) => {
          this.memoryChanging = false;
          throw err;
        },
      );
    }
    this.swapMemory(regions);
  }

  private swapMemory(regions: GuestMemoryRegion[]): void {
    const mem = new GuestMemory(regions);
    this.unregisterMemory();
    mem.regions.forEach((r, id) => this.blk.registerBuffer(id, r.memory));
    this.mem = mem;
    this.bytes = mem.regions.map((r) => r.memory.subarray(0, r.size));
    this.handler.views = mem.views;
    this.handler.bytes = this.bytes;
  }

  private unregisterMemory(): void {
    if (!this.mem) return;
    for (let id = 0; id < this.mem.regions.length; id++) this.blk.unregisterBuffer(id);
    this.mem = null;
    this.bytes = [];
    this.handler.views = [];
    this.handler.bytes = [];
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
      this.fail(index, { kind: 'memory-not-set' });
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
      this.fail(index, { kind: 'ring-setup', message: err.message });
      return;
    }
    const ring: RingId = { descAddr: setup.descAddr, availAddr: setup.availAddr, usedAddr: setup.usedAddr, size: setup.size };
    const q = new BlkQueue(index, vq, ring);
    this.queues[index] = q;
    const base = this.stoppedBase[index]!;
    this.stoppedBase[index] = -1;
    if (this.parking.size > 0) {
      this.parked.adopt(q, base === (setup.lastAvailIdx & 0xffff));
      this.publishDirty();
      this.raisePending();
    }
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
    this.handler.acked = 0n;
    this.needsReset = false;
    this.lastFault = null;
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
          this.breakQueue(q, vq.error!);
          break;
        }
        for (let k = 0; k < n; k++) {
          const head = vq.pop();
          const fault = head < 0 ? vq.error! : this.handler.handle(q, head);
          if (fault) {
            if (!q.broken) this.breakQueue(q, fault);
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
      this.breakQueue(q, { kind: 'internal', message: (err as Error).message });
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
    for (const r of lost) this.parked.settle(r, VIRTIO_BLK_S_IOERR);
    this.publishDirty();
    this.raisePending();
    await this.parking.settled(); // these, and any retry already in flight
    return { retried: submitted, parked: this.parkedRequests };
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
      const fault = head < 0 ? vq.error! : this.handler.handle(q, head);
      if (fault) {
        if (!q.broken) this.breakQueue(q, fault);
        break;
      }
      count++;
    }
    this.resubmittedTotal += count;
    if (count > 0) this.onResubmitted?.(q.index, count);
  }

  private complete(tags: Uint32Array, results: Int32Array, count: number): void {
    for (let i = 0; i < count; i++) {
      const tag = tags[i];
      const r = results[i];
      if (tag & PARKED_TAG) {
        this.parked.completed(tag & ~PARKED_TAG, r);
        continue;
      }
      const q = this.queues[tag >>> 16];
      const slot = tag & 0xffff;
      if (!q || slot >= q.vq.size) continue;
      if (r === -ENOSPC && this.enospc === 'stop') this.parked.park(q, slot);
      else {
        const status = blkStatus(r);
        if (status === VIRTIO_BLK_S_IOERR) this.countFailure(q.op[slot]!);
        q.complete(slot, this.bytes, status);
      }
      this.dirty.mark(q);
    }
    this.publishDirty();
    this.raisePending();
  }

  /** Publishes the used entries of every queue touched since the last call; wakes stopQueue waiters. */
  private publishDirty(): void {
    this.dirty.publish(this.queues);
  }

  /** submit() threw: the block layer took none of the batch, so every request in it fails. */
  private failBatch(q: BlkQueue, err: Error): void {
    for (let i = 0; i < q.batchCount; i++) {
      const slot = q.batch[i]!;
      this.countFailure(q.op[slot]!);
      q.complete(slot, this.bytes, VIRTIO_BLK_S_IOERR);
    }
    q.batchCount = 0;
    console.error(`spindle: queue ${q.index}: the block layer refused a batch: ${err.message}`);
    q.wakeIfDrained();
  }

  private breakQueue(q: BlkQueue, fault: QueueFault): void {
    q.broken = true;
    this.fail(q.index, fault);
  }

  private fail(index: number, fault: QueueFault): void {
    this.needsReset = true;
    this.lastFault = fault;
    const sentence = `Queue ${index} stopped: ${describeQueueFault(fault)}.`;
    if (this.onBroken) this.onBroken(index, sentence);
    else console.warn(`spindle: virtio-blk: ${sentence}`);
  }
}
