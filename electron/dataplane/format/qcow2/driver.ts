// The qcow2 driver: a BlockDevice (block/types.ts) over the image file's BlockBackend. Each guest
// request becomes host requests split at cluster boundaries on the SAME registered guest memory
// (no copy), issued in the batch of the guest's own; only what needs metadata first (an L2 table
// not cached, an allocating write, a compressed cluster) leaves the synchronous path.
// Allocating writes: data (and the copy-on-write rest of the cluster) is written into a cluster
// already counted, and only then does the L2 entry point to it; a reader sees the old mapping until
// then. Writes that allocate the same guest cluster wait for each other (cluster locks); the rest
// keeps the guest's queue depth.
// This file takes requests in, dispatches them, delivers completions, and owns flush, resize and
// the device's lifetime; the paths are read.ts, write.ts with allocate.ts, and zero.ts.
import { EventEmitter } from 'node:events';
import { SpindleError } from '../../../shared/errors.js';
import { checkNewSize, type BlockBackend, type BackendModes } from '../../block/backend.js';
import { FORMAT_SLOT } from '../../block/stats.js';
import { BlockOp, type BlockDevice } from '../../block/types.js';
import { errnoOfError, type Lower } from './lower.js';
import { ClusterLocks } from './cluster-locks.js';
import type { Qcow2Image } from './image.js';
import { slowRead, tryRead } from './read.js';
import { EIO, EROFS, type Backing, type DriverCtx, type ModeChange, type Req } from './request.js';
import { tryWrite, writeRange } from './write.js';
import { zeroOrDiscard } from './zero.js';

export type { Backing } from './request.js';

const CALL_TAG = 0x8000_0000;
const CALL_BUFFER = 0xd000_0000;
/** Per thread, like lower.ts's: the promise API's buffers reach the whole backing chain. */
let nextCallBuffer = CALL_BUFFER;

export class Qcow2Device extends EventEmitter implements BlockDevice {
  readonly path: string;
  sizeBytes: number;
  readonly logicalBlockSize: number;
  readonly physicalBlockSize: number;
  readonly readOnly: boolean;
  readonly supportsDiscard = true;
  readonly supportsWriteZeroes = true;
  onComplete: ((tags: Uint32Array, results: Int32Array, count: number) => void) | null = null;

  private readonly cs: number;
  private readonly buffers = new Map<number, Uint8Array>();
  private batch: Req[] = [];
  private active = 0;
  private doneTags: number[] = [];
  private doneResults: number[] = [];
  private scheduled = false;
  private tagsOut = new Uint32Array(256);
  private resultsOut = new Int32Array(256);
  private drainWaiters: (() => void)[] = [];
  private readonly clusterLocks = new ClusterLocks();
  private readonly calls = new Map<number, (res: number) => void>();
  private nextCall = CALL_TAG;
  private trimming = false;
  private closing = false;
  /** What the request paths (read.ts, write.ts, allocate.ts, zero.ts) see of this device. */
  private readonly ctx: DriverCtx;

  constructor(
    readonly file: BlockBackend,
    private readonly io: Lower,
    readonly image: Qcow2Image,
    readonly backing: Backing | null,
  ) {
    super();
    this.path = image.path;
    this.cs = image.cs;
    this.sizeBytes = image.h.sizeBytes;
    this.logicalBlockSize = file.logicalBlockSize;
    this.physicalBlockSize = file.physicalBlockSize;
    this.readOnly = file.readOnly;
    this.ctx = {
      path: this.path,
      sizeBytes: () => this.sizeBytes,
      cs: this.cs,
      image,
      io,
      backing,
      buffers: this.buffers,
      clusterLocks: this.clusterLocks,
      log: (message) => this.emit('log', message),
      part: (req, res) => this.part(req, res),
      partDone: (res, req) => this.part(req as Req, res),
      count: (slot) => this.count(slot),
      afterAllocation: () => this.afterAllocation(),
    };
  }

  get writeCache(): boolean {
    return this.file.writeCache;
  }

  set writeCache(on: boolean) {
    this.file.writeCache = on;
  }

  get inFlight(): number {
    return this.active + this.batch.length;
  }

  get currentModes(): BackendModes {
    return this.file.currentModes;
  }

  private count(slot: number, n = 1): void {
    this.file.counters.slots[slot]! += n;
  }

  registerBuffer(id: number, memory: Uint8Array): void {
    this.buffers.set(id, memory);
    this.file.registerBuffer(id, memory);
    this.backing?.dev.registerBuffer(id, memory);
  }

  unregisterBuffer(id: number): void {
    this.buffers.delete(id);
    this.file.unregisterBuffer(id);
    this.backing?.dev.unregisterBuffer(id);
  }

  begin(tag: number, op: BlockOp, offsetBytes: number, lengthBytes = 0, flags = 0): void {
    const rw = op === BlockOp.Read || op === BlockOp.Write;
    this.batch.push({ tag, op, offset: offsetBytes, length: rw ? 0 : lengthBytes, flags, segs: [], pending: 1, result: 0 });
  }

  segment(bufferId: number, bufferOffset: number, length: number): void {
    const r = this.batch[this.batch.length - 1];
    if (!r) throw new Error('segment() without begin()');
    r.segs.push(bufferId, bufferOffset, length);
    if (r.op === BlockOp.Read || r.op === BlockOp.Write) r.length += length;
  }

  submit(): void {
    if (this.closing && this.calls.size === 0) throw new SpindleError('CANCELLED', `${this.path} is closing.`);
    const batch = this.batch;
    this.batch = [];
    for (const req of batch) {
      this.active++;
      this.dispatch(req);
    }
    this.io.submit();
    this.backing?.io.submit();
    const s = this.file.counters.slots;
    s[FORMAT_SLOT.l2Hits] = this.image.l2.hits;
    s[FORMAT_SLOT.l2Misses] = this.image.l2.misses;
  }

  private dispatch(req: Req): void {
    if (req.offset < 0 || req.offset + req.length > this.sizeBytes) return this.fail(req, EIO);
    switch (req.op) {
      case BlockOp.Read:
        if (!tryRead(this.ctx, req)) this.async(req, slowRead(this.ctx, req));
        return;
      case BlockOp.Write:
        if (this.readOnly) return this.fail(req, EROFS);
        if (!tryWrite(this.ctx, req))
          this.async(
            req,
            writeRange(this.ctx, req, 0, req.offset, req.length, false).then(() => this.afterAllocation()),
          );
        return;
      case BlockOp.Flush:
        this.async(req, this.flushMetadata());
        return;
      case BlockOp.Discard:
      case BlockOp.WriteZeroes:
        if (this.readOnly) return this.fail(req, EROFS);
        this.async(req, zeroOrDiscard(this.ctx, req));
        return;
      default:
        this.fail(req, -95);
    }
  }

  private async(req: Req, work: Promise<void>): void {
    work.then(
      () => this.part(req, 0),
      (err: unknown) => {
        this.emit('log', `${this.path}: ${(err as Error).message}`);
        this.part(req, errnoOfError(err));
      },
    );
  }

  private fail(req: Req, res: number): void {
    req.result = res;
    this.finish(req);
  }

  private part(req: Req, res: number): void {
    if (res < 0 && req.result >= 0) req.result = res;
    if (--req.pending === 0) this.finish(req);
  }

  private finish(req: Req): void {
    this.active--;
    this.doneTags.push(req.tag);
    this.doneResults.push(req.result);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.deliver());
    }
  }

  private deliver(): void {
    this.scheduled = false;
    const n = this.doneTags.length;
    if (this.tagsOut.length < n) {
      this.tagsOut = new Uint32Array(n * 2);
      this.resultsOut = new Int32Array(n * 2);
    }
    let k = 0;
    for (let i = 0; i < n; i++) {
      const tag = this.doneTags[i]!;
      const call = tag >= CALL_TAG ? this.calls.get(tag) : undefined;
      if (call) {
        this.calls.delete(tag);
        call(this.doneResults[i]!);
        continue;
      }
      this.tagsOut[k] = tag;
      this.resultsOut[k++] = this.doneResults[i]!;
    }
    this.doneTags.length = 0;
    this.doneResults.length = 0;
    if (k && this.onComplete) this.onComplete(this.tagsOut, this.resultsOut, k);
    if (this.active === 0 && this.batch.length === 0 && this.drainWaiters.length) {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const f of w) f();
    }
  }

  // ---- metadata writeback ----

  /** With the guest's write cache off (or a write-through cache mode), an allocating change is
   *  durable, metadata included, before it completes. */
  private async afterAllocation(): Promise<void> {
    if (!this.writeCache && this.image.dirty) await this.flushMetadata();
    else this.maybeTrim();
  }

  private maybeTrim(): void {
    if (this.trimming || !this.image.l2.needsWriteback) return;
    this.trimming = true;
    void this.flushMetadata()
      .catch((err: unknown) => this.emit('log', `${this.path}: writing back metadata failed: ${(err as Error).message}`))
      .finally(() => (this.trimming = false));
  }

  /** Writes metadata back (a guest FLUSH). `all`: until nothing is left, the refcounts dropped
   *  by the writeback itself included (close). */
  async flushMetadata(all = false): Promise<void> {
    const unlock = await this.image.lock.lock();
    try {
      if (this.readOnly) await this.io.flush();
      else for (let i = 0; i < (all ? 4 : 1) && (i === 0 || this.image.dirty); i++) await this.image.writeBack();
    } finally {
      unlock();
    }
  }

  // ---- size, modes, lifetime ----

  /** Grows the disk to `newSizeBytes` (header, L1 table); shrinking is refused. */
  async resize(newSizeBytes: number): Promise<void> {
    if (this.readOnly) throw new SpindleError('READ_ONLY', `${this.path} is open read-only; it cannot be resized.`);
    checkNewSize(this.path, this.sizeBytes, newSizeBytes); // the same rules and sentences as raw
    if (newSizeBytes === this.sizeBytes) return;
    const unlock = await this.image.lock.lock();
    try {
      await this.image.grow(newSizeBytes);
      this.sizeBytes = newSizeBytes;
    } finally {
      unlock();
    }
  }

  /** Switches aio/cache/nowait of the image file and of its backing chain. */
  async reconfigure(change: ModeChange): Promise<void> {
    await this.file.reconfigure(change);
    await this.backing?.dev.reconfigure?.(change);
  }

  drain(): Promise<void> {
    if (this.active === 0 && this.batch.length === 0) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  async close(): Promise<void> {
    if (this.closing) return;
    await this.drain();
    try {
      if (!this.readOnly) await this.flushMetadata(true);
    } finally {
      this.closing = true;
      await this.backing?.dev.close();
      await this.file.close();
    }
  }

  // ---- promise API (tests, tools): the same request path as the guest's ----

  private call(op: BlockOp, offset: number, length: number, data: Uint8Array | null, flags = 0): Promise<void> {
    return new Promise((resolve, reject) => {
      const tag = this.nextCall;
      this.nextCall = tag + 1 >= 0xffff_fff0 ? CALL_TAG : tag + 1;
      let id = -1;
      if (data && data.length) {
        id = nextCallBuffer;
        nextCallBuffer = id + 1 >= 0xdfff_0000 ? CALL_BUFFER : id + 1;
        this.registerBuffer(id, data);
      }
      this.calls.set(tag, (res) => {
        if (id >= 0) this.unregisterBuffer(id);
        if (res < 0) reject(new SpindleError(res === -28 ? 'NO_SPACE' : 'IO_ERROR', `${this.path}: request failed (${res}).`));
        else resolve();
      });
      this.begin(tag, op, offset, length, flags);
      if (id >= 0) this.segment(id, 0, data!.length);
      this.submit();
    });
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    await this.call(BlockOp.Read, offset, length, buf);
    return buf;
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.call(BlockOp.Write, offset, data.length, data);
  }

  flush(): Promise<void> {
    return this.call(BlockOp.Flush, 0, 0, null);
  }

  discard(offset: number, length: number): Promise<void> {
    return this.call(BlockOp.Discard, offset, length, null);
  }

  writeZeroes(offset: number, length: number, flags = 0): Promise<void> {
    return this.call(BlockOp.WriteZeroes, offset, length, null, flags);
  }
}
