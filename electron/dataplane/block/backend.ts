// BlockBackend: one open disk (file or host block device) with its cache mode and its I/O
// engine, implementing the batched contract the virtio layer uses (types.ts), plus a promise
// API for tests and tools over the same batch path, and the live switch of aio/cache/nowait.
import { EventEmitter } from 'node:events';
import { ftruncateSync } from 'node:fs';
import { SpindleError } from '../../shared/errors.js';
import { AioEngine, REQUEST_FLAG_FUA, SubmissionQueue } from './engine.js';
import { CACHE_SEMANTICS, modeConflict, type AioMode, type CacheMode, type NowaitMode } from '../../shared/modes.js';
import { NowaitPolicy, type NowaitEvent, type NowaitPolicyOptions } from './nowait-policy.js';
import { ImageLock } from './image-lock.js';
import { ioError, openDisk, type OpenedDisk } from './open.js';
import { geometry } from '../native/os.js';
import { formatSize } from '../../shared/size.js';
import { DiskCounters } from './stats.js';
import { BlockOp, type BlockDevice } from './types.js';

export interface BackendOptions {
  aio?: AioMode;
  cache?: CacheMode;
  /** RWF_NOWAIT for native/io_uring: 'auto' = on for image files under the adaptive policy, off for block devices. */
  nowait?: NowaitMode;
  readOnly?: boolean;
  /** Requests in the kernel at once (native, io_uring). */
  queueDepth?: number;
  /** Thread pool bound (default 64). */
  maxWorkers?: number;
  /** The threads engine's page-cache fast path on writeback, writethrough and unsafe (default on;
   *  engine.ts EngineOptions.fastPath). */
  fastPath?: boolean;
  /** Allocation-aware native's allocation chunk (bytes, a power of two; default 1 MiB). */
  allocChunk?: number;
  /** io_uring's first setup-flag choice (engine.ts EngineOptions.uringSetup; default 'coop'). */
  uringSetup?: 'defer' | 'coop' | 'plain';
  /** io_uring: guest RAM as fixed buffers (engine.ts EngineOptions.fixedBuffers; default off). */
  fixedBuffers?: boolean;
  /** Counters to add into (e.g. shared with the stats sampler); a new set by default. */
  counters?: DiskCounters;
  nowaitPolicy?: Partial<NowaitPolicyOptions>;
  /** QEMU's image locks, held by the caller across several opens (bench-engines); by default the
   *  backend takes its own and drops them when it closes. */
  lock?: ImageLock;
  /** The format the caller knows the file holds (raw, or the qcow2 container a format driver reads
   *  through this backend): no probe. Absent: a file that looks like another format is refused. */
  format?: 'raw' | 'qcow2';
}

export interface BackendModes {
  aio: AioMode;
  cache: CacheMode;
  nowait: NowaitMode;
  /** What is in effect now per direction (auto may have turned a direction off). */
  nowaitActive: { read: boolean; write: boolean };
}

/** Tags at or above this are the promise API's own; virtio tags (descriptor heads) stay far below. */
export const RESERVED_TAG_BASE = 0x8000_0000;
const RESERVED_BUFFER_BASE = 0xf000_0000;

interface PendingCall {
  resolve(result: number): void;
  bufferId: number;
}

export class BlockBackend extends EventEmitter implements BlockDevice {
  readonly path: string;
  readonly kind: 'file' | 'block';
  readonly logicalBlockSize: number;
  readonly physicalBlockSize: number;
  readonly readOnly: boolean;
  readonly supportsDiscard: boolean;
  readonly supportsWriteZeroes = true;
  readonly counters: DiskCounters;
  onComplete: ((tags: Uint32Array, results: Int32Array, count: number) => void) | null = null;

  private disk: OpenedDisk;
  private size: number;
  /** Held from open to close: a live switch reopens the I/O fd, never this one. */
  private readonly lock: ImageLock;
  private readonly ownsLock: boolean;
  private engine: AioEngine;
  private modes: { aio: AioMode; cache: CacheMode; nowait: NowaitMode };
  private policy: NowaitPolicy | null = null;
  private readonly queue = new SubmissionQueue();
  private readonly callQueue = new SubmissionQueue(1024);
  private readonly buffers = new Map<number, Uint8Array>();
  private readonly calls = new Map<number, PendingCall>();
  private nextCallTag = RESERVED_TAG_BASE;
  private nextCallBuffer = RESERVED_BUFFER_BASE;
  private switching: Promise<void> | null = null;
  private closing = false;
  private completionsSincePolicy = 0;
  private wce: boolean;
  /** REQUEST_FLAG_FUA while writes must be durable before they complete, else 0. */
  private fua = 0;

  private constructor(
    path: string,
    disk: OpenedDisk,
    lock: ImageLock,
    modes: { aio: AioMode; cache: CacheMode; nowait: NowaitMode },
    private readonly options: BackendOptions,
  ) {
    super();
    this.path = path;
    this.disk = disk;
    this.lock = lock;
    this.ownsLock = lock !== options.lock;
    this.kind = disk.kind;
    this.size = disk.sizeBytes;
    this.logicalBlockSize = disk.logicalBlockSize;
    this.physicalBlockSize = disk.physicalBlockSize;
    this.readOnly = disk.readOnly;
    this.modes = modes;
    this.wce = CACHE_SEMANTICS[modes.cache].writeCache;
    this.updateFua();
    this.supportsDiscard = disk.supportsDiscard;
    this.counters = options.counters ?? new DiskCounters();
    this.engine = this.makeEngine(disk, modes);
  }

  /** Opens `path` (image file or block device). Throws SpindleError with a user sentence. */
  static async open(path: string, options: BackendOptions = {}): Promise<BlockBackend> {
    const aio = options.aio ?? 'threads';
    const cache = options.cache ?? 'writeback';
    const nowait = options.nowait ?? 'auto';
    const readOnly = options.readOnly ?? false;
    const disk = openDisk(path, { cache, aio, readOnly, ...(options.format ? { format: options.format } : {}) });
    let lock: ImageLock;
    try {
      if (options.lock && !readOnly && !options.lock.write)
        throw new SpindleError('INTERNAL', `${path}: a reader's lock cannot cover a read-write open.`);
      lock = options.lock ?? ImageLock.acquire(path, { write: !readOnly });
    } catch (err) {
      disk.close();
      throw err;
    }
    try {
      return new BlockBackend(path, disk, lock, { aio, cache, nowait }, options);
    } catch (err) {
      disk.close();
      if (lock !== options.lock) lock.release();
      throw engineError(err, path, aio);
    }
  }

  get sizeBytes(): number {
    return this.size;
  }

  /**
   * Grows the disk. A file is extended with ftruncate (sparse: the new part reads as zeros); a
   * block device is not changed here: its size is read again and the new size must fit in what
   * it has now (grow the LV or partition first). Requests in flight go on; none reaches past the
   * old end before the caller raises the device's capacity.
   */
  async resize(newSizeBytes: number): Promise<void> {
    if (this.closing) throw new SpindleError('CANCELLED', `${this.path} is closing.`);
    while (this.switching) await this.switching;
    checkNewSize(this.path, this.size, newSizeBytes);
    if (newSizeBytes === this.size) return;
    if (this.readOnly) throw new SpindleError('READ_ONLY', `${this.path} is attached read-only; it cannot be resized.`);
    if (this.disk.kind === 'block') {
      const has = geometry(this.disk.fd).sizeBytes;
      if (newSizeBytes > has)
        throw new SpindleError(
          'INVALID_ARGUMENT',
          `${this.path} is a block device of ${formatSize(has)} (${has} bytes); grow the device itself first (lvextend, a larger partition), then resize the disk to at most that.`,
        );
    } else {
      try {
        ftruncateSync(this.disk.fd, newSizeBytes);
      } catch (err) {
        throw ioError(err, `growing ${this.path} to ${newSizeBytes} bytes`);
      }
    }
    this.size = newSizeBytes;
  }

  get currentModes(): BackendModes {
    const active = this.nowaitFor(this.modes, this.disk.kind);
    return { ...this.modes, nowaitActive: active };
  }

  get inFlight(): number {
    return this.engine.inFlight + this.queue.count + this.callQueue.count;
  }

  /**
   * The write cache the guest sees (virtio-blk WCE). The guest may turn it off (CONFIG_WCE); then
   * every write and write-zeroes is durable before it completes, like QEMU's FUA emulation: the
   * engine holds their completions until an fdatasync covering them finishes. No extra flush is
   * needed on an O_DSYNC fd (writethrough, directsync). Cache 'unsafe' keeps ignoring flushes even
   * with the cache off, as QEMU's cache.no-flush does: the user chose speed over durability.
   */
  get writeCache(): boolean {
    return this.wce;
  }

  set writeCache(on: boolean) {
    this.wce = on;
    this.updateFua();
  }

  private updateFua(): void {
    const sem = CACHE_SEMANTICS[this.modes.cache];
    this.fua = !this.wce && !sem.dsync && sem.flush !== 'nothing' ? REQUEST_FLAG_FUA : 0;
  }

  registerBuffer(id: number, memory: Uint8Array): void {
    this.engine.registerBuffer(id, memory);
    this.buffers.set(id, memory);
  }

  unregisterBuffer(id: number): void {
    this.engine.unregisterBuffer(id);
    this.buffers.delete(id);
  }

  begin(tag: number, op: BlockOp, offsetBytes: number, lengthBytes = 0, flags = 0): void {
    if (op === BlockOp.Write || op === BlockOp.WriteZeroes) flags |= this.fua;
    this.queue.begin(tag, op, offsetBytes, lengthBytes, flags);
  }

  segment(bufferId: number, bufferOffset: number, length: number): void {
    this.queue.segment(bufferId, bufferOffset, length);
  }

  submit(): void {
    if (this.closing && !this.switching) throw new SpindleError('CANCELLED', `${this.path} is closing.`);
    if (!this.switching) this.engine.submit(this.queue); // while switching, the batch waits in the queue
  }

  async drain(): Promise<void> {
    while (this.switching) await this.switching;
    await this.engine.drain();
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.drain();
    await this.engine.close();
    this.disk.close();
    if (this.ownsLock) this.lock.release(); // only once nothing can write any more
  }

  // ---- promise API (tests, tools): same engine, same batch path, its own tags and buffers ----

  async read(offsetBytes: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    await this.call(BlockOp.Read, offsetBytes, length, 0, buf, `read of ${length} bytes at ${offsetBytes}`);
    return buf;
  }

  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    await this.call(BlockOp.Write, offsetBytes, data.length, 0, data, `write of ${data.length} bytes at ${offsetBytes}`);
  }

  async flush(): Promise<void> {
    await this.call(BlockOp.Flush, 0, 0, 0, null, 'flush');
  }

  async discard(offsetBytes: number, length: number): Promise<void> {
    await this.call(BlockOp.Discard, offsetBytes, length, 0, null, `discard of ${length} bytes at ${offsetBytes}`);
  }

  async writeZeroes(offsetBytes: number, length: number, flags = 0): Promise<void> {
    await this.call(BlockOp.WriteZeroes, offsetBytes, length, flags, null, `write-zeroes of ${length} bytes at ${offsetBytes}`);
  }

  private call(op: BlockOp, offset: number, length: number, flags: number, data: Uint8Array | null, what: string): Promise<void> {
    if (this.closing) return Promise.reject(new SpindleError('CANCELLED', `${this.path} is closed.`));
    const tag = this.nextCallTag;
    this.nextCallTag = this.nextCallTag >= 0xffff_fff0 ? RESERVED_TAG_BASE : this.nextCallTag + 1;
    let bufferId = -1;
    if (op === BlockOp.Write || op === BlockOp.WriteZeroes) flags |= this.fua;
    this.callQueue.begin(tag, op, offset, length, flags);
    if (data && data.length) {
      bufferId = this.nextCallBuffer;
      this.nextCallBuffer = this.nextCallBuffer >= 0xffff_fff0 ? RESERVED_BUFFER_BASE : this.nextCallBuffer + 1;
      this.engine.registerBuffer(bufferId, data);
      this.callQueue.segment(bufferId, 0, data.length);
    }
    return new Promise<void>((resolve, reject) => {
      this.calls.set(tag, {
        bufferId,
        resolve: (res) => (res < 0 ? reject(ioError(res, `${this.path}: ${what}`)) : resolve()),
      });
      if (!this.switching) this.engine.submit(this.callQueue);
    });
  }

  // ---- live switch ----

  /**
   * Changes aio, cache and/or nowait of the open disk: new requests wait, in-flight ones drain,
   * the fd is reopened with the new flags and the engine swapped; nothing fails. On a refusal
   * (e.g. O_DIRECT unsupported) the disk goes on with its old modes and the error is thrown.
   */
  async reconfigure(change: { aio?: AioMode; cache?: CacheMode; nowait?: NowaitMode }): Promise<void> {
    if (this.closing) throw new SpindleError('CANCELLED', `${this.path} is closing.`);
    while (this.switching) await this.switching;
    const next = { aio: change.aio ?? this.modes.aio, cache: change.cache ?? this.modes.cache, nowait: change.nowait ?? this.modes.nowait };
    const conflict = modeConflict(next.aio, next.cache);
    if (conflict) throw new SpindleError('UNSUPPORTED_MODE', conflict);
    const sameEngine = this.extentMapFor(next, this.disk.kind) === this.extentMapFor(this.modes, this.disk.kind);
    if (next.aio === this.modes.aio && next.cache === this.modes.cache && sameEngine) {
      this.modes = next;
      this.policy = null;
      this.applyNowait();
      return;
    }
    let done!: () => void;
    this.switching = new Promise<void>((r) => (done = r));
    try {
      await this.engine.close(); // drains first
      const old = this.modes;
      this.disk.close(); // before reopening: block devices are opened O_EXCL; the image locks stay (this.lock)
      try {
        this.disk = openDisk(this.path, {
          cache: next.cache,
          aio: next.aio,
          readOnly: this.readOnly,
          format: this.options.format ?? 'raw',
        });
        this.engine = this.makeEngine(this.disk, next);
        this.modes = next;
      } catch (err) {
        this.disk = openDisk(this.path, { cache: old.cache, aio: old.aio, readOnly: this.readOnly, format: this.options.format ?? 'raw' });
        this.engine = this.makeEngine(this.disk, old);
        throw engineError(err, this.path, next.aio);
      } finally {
        // The guest's WCE setting survives the switch: it was told whether to flush, and a
        // guest told "no cache" must keep getting durable writes (FUA) under a caching mode.
        this.updateFua();
        for (const [id, mem] of this.buffers) this.engine.registerBuffer(id, mem);
      }
    } finally {
      this.switching = null;
      done();
      this.engine.submit(this.queue);
      this.engine.submit(this.callQueue);
    }
  }

  private makeEngine(disk: OpenedDisk, modes: { aio: AioMode; cache: CacheMode; nowait: NowaitMode }): AioEngine {
    const nowait = this.nowaitFor(modes, disk.kind);
    this.policy = null;
    const engine = new AioEngine({
      kind: modes.aio,
      fd: disk.fd,
      isBlock: disk.kind === 'block',
      alignment: disk.logicalBlockSize,
      queueDepth: this.options.queueDepth ?? 128,
      maxWorkers: this.options.maxWorkers ?? 64,
      fastPath: this.options.fastPath ?? true,
      extentMap: this.extentMapFor(modes, disk.kind),
      ...(this.options.allocChunk ? { allocChunk: this.options.allocChunk } : {}),
      ...(this.options.uringSetup ? { uringSetup: this.options.uringSetup } : {}),
      fixedBuffers: this.options.fixedBuffers ?? false,
      readOnly: disk.readOnly,
      flushNoop: CACHE_SEMANTICS[modes.cache].flush === 'nothing',
      nowaitRead: nowait.read,
      nowaitWrite: nowait.write,
      counters: this.counters.slots,
      onComplete: (tags, results, count) => this.completed(tags, results, count),
    });
    return engine;
  }

  private nowaitFor(modes: { aio: AioMode; nowait: NowaitMode }, kind: 'file' | 'block'): { read: boolean; write: boolean } {
    if (modes.aio === 'threads' || modes.nowait === 'off') return { read: false, write: false };
    if (modes.nowait === 'on') return { read: true, write: true };
    // auto: only native on image files; on block devices EAGAIN means a full queue, not "would block".
    if (modes.aio !== 'native' || kind === 'block') return { read: false, write: false };
    return { read: this.policy?.enabled('read') ?? true, write: this.policy?.enabled('write') ?? true };
  }

  /** nowait 'auto' with native on an image file is allocation-aware: the engine keeps the file's
   *  extent map and decides per write (engine.ts EngineOptions.extentMap). */
  private extentMapFor(modes: { aio: AioMode; nowait: NowaitMode }, kind: 'file' | 'block'): boolean {
    return modes.aio === 'native' && modes.nowait === 'auto' && kind === 'file';
  }

  /** What the engine was set up with (AioEngine.features). */
  get engineFeatures(): string {
    return this.engine.features;
  }

  private applyNowait(): void {
    const n = this.nowaitFor(this.modes, this.disk.kind);
    this.engine.setNowait(n.read, n.write);
  }

  private completed(tags: Uint32Array, results: Int32Array, count: number): void {
    let n = count;
    if (this.calls.size) {
      n = 0;
      for (let i = 0; i < count; i++) {
        const tag = tags[i]!;
        const call = tag >= RESERVED_TAG_BASE ? this.calls.get(tag) : undefined;
        if (call) {
          this.calls.delete(tag);
          if (call.bufferId >= 0) this.engine.unregisterBuffer(call.bufferId);
          call.resolve(results[i]!);
        } else {
          tags[n] = tag;
          results[n] = results[i]!;
          n++;
        }
      }
    }
    if (n > 0 && this.onComplete) this.onComplete(tags, results, n);
    this.completionsSincePolicy += count;
    if (this.completionsSincePolicy >= 256) {
      this.completionsSincePolicy = 0;
      this.runPolicy();
    }
  }

  private runPolicy(): void {
    if (this.modes.nowait !== 'auto' || this.modes.aio !== 'native' || this.disk.kind === 'block') return;
    const s = this.counters.snapshot();
    const sample = {
      read: { submitted: s.nowait.readSubmitted, fallbacks: s.nowait.readFallbacks, ops: s.read.ops },
      // Allocation-aware: the extent map sends each write where it belongs, so the write
      // direction has nothing for the policy to switch (its bounces are counted as misses).
      write: this.extentMapFor(this.modes, this.disk.kind)
        ? { submitted: 0, fallbacks: 0, ops: s.write.ops }
        : { submitted: s.nowait.writeSubmitted, fallbacks: s.nowait.writeFallbacks, ops: s.write.ops },
    };
    if (!this.policy) {
      this.policy = new NowaitPolicy(sample, this.options.nowaitPolicy);
      return;
    }
    const events: NowaitEvent[] = this.policy.update(sample, Date.now());
    if (!events.length) return;
    this.applyNowait();
    for (const e of events) this.emit('nowait', e);
  }
}

/** Refuses a new size that shrinks the disk or is not whole 512-byte sectors, with a sentence. */
export function checkNewSize(path: string, current: number, next: number): void {
  if (!Number.isSafeInteger(next) || next <= 0)
    throw new SpindleError('INVALID_ARGUMENT', `A disk size must be a positive whole number of bytes, not ${next}.`);
  if (next % 512 !== 0)
    throw new SpindleError('INVALID_ARGUMENT', `${next} bytes is not a multiple of 512 (a disk is made of 512-byte sectors).`);
  if (next < current)
    throw new SpindleError(
      'INVALID_ARGUMENT',
      `${path} is ${formatSize(current)} (${current} bytes); shrinking a disk is refused: the guest's filesystem and partitions would lose their end. Give a size of at least ${current} bytes.`,
    );
}

/** The engine refused the fd (e.g. native without O_DIRECT, io_uring disabled): say so. */
function engineError(err: unknown, path: string, aio: AioMode): unknown {
  if (err instanceof SpindleError) return err;
  const code = (err as { code?: string }).code;
  if (aio === 'native' && code === 'EINVAL') {
    return new SpindleError('UNSUPPORTED_MODE', `aio 'native' cannot serve ${path}: ${(err as Error).message}.`, code, { cause: err });
  }
  return new SpindleError('UNSUPPORTED_MODE', `aio '${aio}' could not start for ${path}: ${(err as Error).message}.`, code, { cause: err });
}
