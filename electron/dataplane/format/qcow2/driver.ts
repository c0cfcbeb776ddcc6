// The qcow2 driver: a BlockDevice (block/types.ts) over the image file's BlockBackend. Each guest
// request becomes host requests split at cluster boundaries on the SAME registered guest memory
// (no copy), issued in the batch of the guest's own; only what needs metadata first (an L2 table
// not cached, an allocating write, a compressed cluster) leaves the synchronous path.
// Allocating writes: data (and the copy-on-write rest of the cluster) is written into a cluster
// already counted, and only then does the L2 entry point to it; a reader sees the old mapping until
// then. Writes that allocate the same guest cluster wait for each other (cluster locks); the rest
// keeps the guest's queue depth.
import { EventEmitter } from 'node:events';
import { SpindleError } from '../../../shared/errors.js';
import { checkNewSize, type BlockBackend, type BackendModes } from '../../block/backend.js';
import { FORMAT_SLOT } from '../../block/stats.js';
import { BlockOp, type BlockDevice } from '../../block/types.js';
import type { AioMode, CacheMode, NowaitMode } from '../../../shared/modes.js';
import { errnoOfError, type Lower } from './lower.js';
import { decompressCluster } from './compressed.js';
import type { L2Entry } from './entries.js';
import type { Qcow2Image } from './image.js';
import type { CachedTable } from './table-cache.js';
import { copyIntoSlice, forSlice, zeroSlice, type Segments } from './segments.js';

/** A backing image: any BlockDevice (raw BlockBackend or another Qcow2Device), read-only. */
type ModeChange = { aio?: AioMode; cache?: CacheMode; nowait?: NowaitMode };

export interface Backing {
  dev: BlockDevice & { reconfigure?(change: ModeChange): Promise<void> };
  io: Lower;
  sizeBytes: number;
  path: string;
}

interface Req {
  tag: number;
  op: BlockOp;
  offset: number;
  length: number;
  flags: number;
  segs: Segments;
  pending: number;
  result: number;
}

interface Piece {
  /** Bytes into the request. */
  rel: number;
  len: number;
  gc: number;
  inOff: number;
  l1i: number;
  l2i: number;
  table: CachedTable | null;
  entry: L2Entry;
}

const EIO = -5;
const EROFS = -30;
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
  private readonly clusterLocks = new Map<number, Promise<void>>();
  private readonly calls = new Map<number, (res: number) => void>();
  private nextCall = CALL_TAG;
  private trimming = false;
  private closing = false;

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
        if (!this.tryRead(req)) this.async(req, this.slowRead(req));
        return;
      case BlockOp.Write:
        if (this.readOnly) return this.fail(req, EROFS);
        if (!this.tryWrite(req))
          this.async(
            req,
            this.writeRange(req, 0, req.offset, req.length, false).then(() => this.afterAllocation()),
          );
        return;
      case BlockOp.Flush:
        this.async(req, this.flushMetadata());
        return;
      case BlockOp.Discard:
      case BlockOp.WriteZeroes:
        if (this.readOnly) return this.fail(req, EROFS);
        this.async(req, this.zeroOrDiscard(req));
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
    this.doneTags = [];
    this.doneResults = [];
    if (k && this.onComplete) this.onComplete(this.tagsOut, this.resultsOut, k);
    if (this.active === 0 && this.batch.length === 0 && this.drainWaiters.length) {
      const w = this.drainWaiters;
      this.drainWaiters = [];
      for (const f of w) f();
    }
  }

  // ---- mapping ----

  /** The cluster pieces of guest bytes [abs, abs + len) (request bytes from `rel`), with the L2
   *  tables from `tables` (loaded ones) or the cache; null when one is not at hand. */
  private pieces(rel: number, abs: number, len: number, tables?: Map<number, CachedTable | null>): Piece[] | null {
    const out: Piece[] = [];
    const { l2Entries } = this.image;
    for (let pos = 0; pos < len;) {
      const g = abs + pos;
      const gc = Math.floor(g / this.cs);
      const inOff = g % this.cs;
      const n = Math.min(this.cs - inOff, len - pos);
      const l1i = Math.floor(gc / l2Entries);
      const table = tables?.has(l1i) ? tables.get(l1i)! : this.image.peekL2(l1i);
      if (table === undefined) return null;
      const l2i = gc % l2Entries;
      out.push({ rel: rel + pos, len: n, gc, inOff, l1i, l2i, table, entry: this.image.entry(table, l2i) });
      pos += n;
    }
    return out;
  }

  /** The pieces with their L2 tables loaded (held here even if the cache drops them meanwhile). */
  private async loadPieces(rel: number, abs: number, len: number): Promise<Piece[]> {
    const tables = new Map<number, CachedTable | null>();
    const first = Math.floor(Math.floor(abs / this.cs) / this.image.l2Entries);
    const last = Math.floor(Math.floor((abs + Math.max(len, 1) - 1) / this.cs) / this.image.l2Entries);
    for (let i = first; i <= last; i++) tables.set(i, await this.image.loadL2(i));
    return this.pieces(rel, abs, len, tables)!;
  }

  private hostOk(offset: number, len: number): boolean {
    return offset >= this.cs && offset + len <= this.image.refs.fileEnd;
  }

  // ---- reads ----

  private tryRead(req: Req): boolean {
    const p = this.pieces(0, req.offset, req.length);
    if (!p) return false;
    this.emitRead(req, p);
    this.part(req, 0);
    return true;
  }

  private async slowRead(req: Req): Promise<void> {
    req.pending++;
    try {
      const p = await this.loadPieces(0, req.offset, req.length);
      this.emitRead(req, p);
      this.io.submit();
      this.backing?.io.submit();
    } finally {
      this.part(req, 0);
    }
  }

  private emitRead(req: Req, pieces: Piece[]): void {
    let run: { lower: Lower; rel: number; dev: number; len: number } | null = null;
    const flush = (): void => {
      if (!run) return;
      const r = run;
      run = null;
      req.pending++;
      r.lower.begin(BlockOp.Read, r.dev, r.len, 0, (res) => this.part(req, res));
      forSlice(req.segs, r.rel, r.rel + r.len, (id, off, len) => r.lower.segment(id, off, len));
    };
    const add = (lower: Lower, rel: number, dev: number, len: number): void => {
      if (run && run.lower === lower && run.rel + run.len === rel && run.dev + run.len === dev) run.len += len;
      else {
        flush();
        run = { lower, rel, dev, len };
      }
    };
    for (const p of pieces) {
      const e = p.entry;
      if (e.invalid) {
        this.emit('log', `${this.path}: the L2 entry of guest cluster ${p.gc} is damaged; the read fails.`);
        req.result = EIO;
        continue;
      }
      switch (e.kind) {
        case 'normal': {
          const host = e.offset + p.inOff;
          if (!this.hostOk(e.offset, this.cs)) {
            this.emit('log', `${this.path}: guest cluster ${p.gc} points outside the image (${e.offset}); the read fails.`);
            req.result = EIO;
          } else add(this.io, p.rel, host, p.len);
          break;
        }
        case 'zero':
          zeroSlice(this.buffers, req.segs, p.rel, p.rel + p.len);
          break;
        case 'unallocated': {
          const g = p.gc * this.cs + p.inOff;
          const b = this.backing;
          const from = b ? Math.max(0, Math.min(p.len, b.sizeBytes - g)) : 0;
          if (from > 0) add(b!.io, p.rel, g, from);
          if (from < p.len) zeroSlice(this.buffers, req.segs, p.rel + from, p.rel + p.len);
          break;
        }
        case 'compressed':
          req.pending++;
          this.compressed(e).then(
            (data) => {
              copyIntoSlice(this.buffers, req.segs, p.rel, data.subarray(p.inOff, p.inOff + p.len));
              this.part(req, 0);
            },
            (err: unknown) => {
              this.emit('log', `${this.path}: guest cluster ${p.gc}: ${(err as Error).message}`);
              this.part(req, EIO);
            },
          );
          break;
      }
    }
    flush();
  }

  private async compressed(e: L2Entry): Promise<Buffer> {
    if (e.offset < this.cs || e.offset >= this.image.refs.fileEnd)
      throw new SpindleError('IO_ERROR', `a compressed cluster at ${e.offset} lies outside the image`);
    const len = Math.min(e.compressedBytes, this.image.refs.fileEnd - e.offset);
    const raw = await this.io.read(e.offset, len);
    return decompressCluster(raw, this.cs, this.image.h.compressionType);
  }

  // ---- writes ----

  private inPlace(p: Piece): boolean {
    const e = p.entry;
    return (
      p.table !== null &&
      e.kind === 'normal' &&
      e.copied &&
      !e.invalid &&
      this.image.l1Entry(p.l1i).copied &&
      !this.clusterLocks.has(p.gc) &&
      this.hostOk(e.offset, this.cs) &&
      !this.image.isMetadata(e.offset / this.cs)
    );
  }

  private tryWrite(req: Req): boolean {
    const p = this.pieces(0, req.offset, req.length);
    if (!p || !p.every((x) => this.inPlace(x))) return false;
    req.pending += this.emitInPlace(req.segs, p, false, (res) => this.part(req, res));
    this.part(req, 0);
    this.count(FORMAT_SLOT.inPlaceWrites);
    return true;
  }

  /** In-place writes (guest data or zeros) of allocated clusters, merged where the host is
   *  contiguous; `done` is called once per host request. Returns how many were begun. */
  private emitInPlace(segs: Segments, pieces: Piece[], zeros: boolean, done: (res: number) => void): number {
    let runs = 0;
    let run: { rel: number; dev: number; len: number } | null = null;
    const flush = (): void => {
      if (!run) return;
      const r = run;
      run = null;
      runs++;
      if (zeros) this.io.begin(BlockOp.WriteZeroes, r.dev, r.len, 0, done);
      else {
        this.io.begin(BlockOp.Write, r.dev, r.len, 0, done);
        forSlice(segs, r.rel, r.rel + r.len, (id, off, len) => this.io.segment(id, off, len));
      }
    };
    for (const p of pieces) {
      const dev = p.entry.offset + p.inOff;
      if (run && run.rel + run.len === p.rel && run.dev + run.len === dev) run.len += p.len;
      else {
        flush();
        run = { rel: p.rel, dev, len: p.len };
      }
    }
    flush();
    return runs;
  }

  private async lockClusters(gcs: number[]): Promise<() => void> {
    const sorted = [...new Set(gcs)].sort((a, b) => a - b);
    const releases: (() => void)[] = [];
    for (const gc of sorted) {
      for (let held = this.clusterLocks.get(gc); held; held = this.clusterLocks.get(gc)) await held;
      let release!: () => void;
      this.clusterLocks.set(gc, new Promise<void>((r) => (release = r)));
      releases.push(() => {
        this.clusterLocks.delete(gc);
        release();
      });
    }
    return () => releases.forEach((r) => r());
  }

  /**
   * Writes guest data (or zeros) to guest bytes [abs, abs + len), request bytes from `rel`,
   * allocating clusters where needed: the cluster's other bytes come from what the guest saw there
   * before (the old cluster, a compressed one, the backing file, or zeros), everything is written,
   * and only then does the L2 entry point to the new cluster.
   */
  private async writeRange(req: Req, rel: number, abs: number, len: number, zeros: boolean): Promise<void> {
    const gcs: number[] = [];
    for (let gc = Math.floor(abs / this.cs); gc * this.cs < abs + len; gc++) gcs.push(gc);
    const unlockClusters = await this.lockClusters(gcs);
    try {
      const pieces = await this.loadPieces(rel, abs, len);
      const inPlace: Piece[] = [];
      const alloc: Piece[] = [];
      for (const p of pieces) {
        if (p.entry.invalid) throw new SpindleError('IO_ERROR', `the L2 entry of guest cluster ${p.gc} is damaged`);
        // Locked by this very write: inPlace() would see the lock.
        const e = p.entry;
        const ok =
          p.table !== null && e.kind === 'normal' && e.copied && this.image.l1Entry(p.l1i).copied && this.hostOk(e.offset, this.cs);
        if (ok && this.image.isMetadata(e.offset / this.cs))
          throw new SpindleError(
            'IO_ERROR',
            `guest cluster ${p.gc} points into the image's own metadata at ${e.offset}; the write is refused`,
          );
        (ok ? inPlace : alloc).push(p);
      }
      const writes: Promise<void>[] = [];
      if (inPlace.length) {
        writes.push(
          new Promise<void>((resolve, reject) => {
            let left = 0;
            let failed = 0;
            const done = (res: number): void => {
              if (res < 0 && !failed) failed = res;
              if (--left > 0) return;
              if (failed) reject(new SpindleError(failed === -28 ? 'NO_SPACE' : 'IO_ERROR', `write failed (${failed})`));
              else resolve();
            };
            left = this.emitInPlace(req.segs, inPlace, zeros, done);
          }),
        );
        this.count(FORMAT_SLOT.inPlaceWrites);
      }
      if (alloc.length) {
        this.count(FORMAT_SLOT.allocatingWrites);
        writes.push(this.allocate(req, alloc, zeros));
      }
      this.io.submit();
      const results = await Promise.allSettled(writes);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    } finally {
      unlockClusters();
    }
  }

  private async allocate(req: Req, alloc: Piece[], zeros: boolean): Promise<void> {
    const img = this.image;
    let hosts: number[];
    let unlock = await img.lock.lock();
    try {
      for (const p of alloc) await img.writableL2(p.l1i);
      hosts = await img.refs.allocate(alloc.length);
    } finally {
      unlock();
    }
    try {
      const writes: Promise<void>[] = [];
      const runs: { rel: number; host: number; len: number }[] = [];
      for (let i = 0; i < alloc.length; i++) {
        const p = alloc[i]!;
        const host = hosts[i]!;
        const tail = p.inOff + p.len;
        if (p.inOff > 0 || tail < this.cs) {
          const src = await this.before(p);
          const part = (from: number, to: number): void => {
            if (from >= to) return;
            writes.push(src ? this.io.write(host + from, src.subarray(from, to)) : this.io.writeZeroes(host + from, to - from));
          };
          part(0, p.inOff);
          part(tail, this.cs);
        }
        // The guest's bytes: one host request per run of pieces contiguous in the request and on the host.
        const prev = runs[runs.length - 1];
        if (prev && prev.rel + prev.len === p.rel && prev.host + prev.len === host + p.inOff) prev.len += p.len;
        else runs.push({ rel: p.rel, host: host + p.inOff, len: p.len });
      }
      for (const r of runs) {
        if (zeros) writes.push(this.io.writeZeroes(r.host, r.len));
        else
          writes.push(
            new Promise<void>((resolve, reject) => {
              this.io.begin(BlockOp.Write, r.host, r.len, 0, (res) =>
                res < 0 ? reject(new SpindleError(res === -28 ? 'NO_SPACE' : 'IO_ERROR', `allocating write failed (${res})`)) : resolve(),
              );
              forSlice(req.segs, r.rel, r.rel + r.len, (id, off, len) => this.io.segment(id, off, len));
            }),
          );
      }
      this.io.submit();
      const results = await Promise.allSettled(writes);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    } catch (err) {
      unlock = await img.lock.lock();
      try {
        await img.unallocate(hosts);
      } finally {
        unlock();
      }
      throw err;
    }
    unlock = await img.lock.lock();
    try {
      for (let i = 0; i < alloc.length; i++) {
        const p = alloc[i]!;
        const t = await img.writableL2(p.l1i);
        img.setEntry(t, p.l2i, hosts[i]!, false);
      }
    } finally {
      unlock();
    }
  }

  /** What the guest saw in a cluster before this write (null: zeros), for the bytes it keeps. */
  private async before(p: Piece): Promise<Buffer | null> {
    const e = p.entry;
    switch (e.kind) {
      case 'normal':
        if (!this.hostOk(e.offset, this.cs)) throw new SpindleError('IO_ERROR', `guest cluster ${p.gc} points outside the image`);
        return this.io.read(e.offset, this.cs);
      case 'compressed':
        return this.compressed(e);
      case 'zero':
        return null;
      case 'unallocated': {
        const b = this.backing;
        const g = p.gc * this.cs;
        if (!b || g >= b.sizeBytes) return null;
        const buf = Buffer.alloc(this.cs);
        await b.io.run(BlockOp.Read, g, Math.min(this.cs, b.sizeBytes - g), buf.subarray(0, Math.min(this.cs, b.sizeBytes - g)));
        return buf;
      }
    }
  }

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

  // ---- discard and write-zeroes ----

  private async zeroOrDiscard(req: Req): Promise<void> {
    const img = this.image;
    const zeroes = req.op === BlockOp.WriteZeroes;
    // What a whole cluster becomes: unallocated (reads zeros without a backing file), the zero
    // flag (v3, hides the backing file), or nothing fits (v2 over a backing file).
    const target: 'unallocated' | 'zero' | null = !this.backing ? 'unallocated' : img.h.version === 3 ? 'zero' : null;
    const whole: number[] = [];
    const partial: { rel: number; abs: number; len: number }[] = [];
    const end = req.offset + req.length;
    for (let pos = req.offset; pos < end;) {
      const inOff = pos % this.cs;
      const n = Math.min(this.cs - inOff, end - pos);
      const full = inOff === 0 && (n === this.cs || pos + n >= this.sizeBytes);
      if (full && target) whole.push(Math.floor(pos / this.cs));
      else if (zeroes) {
        const last = partial[partial.length - 1];
        if (last && last.abs + last.len === pos) last.len += n;
        else partial.push({ rel: pos - req.offset, abs: pos, len: n });
      }
      pos += n;
    }
    if (whole.length) {
      const unlockClusters = await this.lockClusters(whole);
      try {
        for (const gc of whole) await img.loadL2(Math.floor(gc / img.l2Entries));
        const unlock = await img.lock.lock();
        try {
          for (const gc of whole) {
            const l1i = Math.floor(gc / img.l2Entries);
            const l2i = gc % img.l2Entries;
            if (!img.l1Entry(l1i).offset && target === 'unallocated') continue;
            const old = img.entry(await img.loadL2(l1i), l2i);
            if (old.kind === 'unallocated' && target === 'unallocated') continue;
            if (old.kind === 'zero' && !old.offset && target === 'zero') continue;
            const t = await img.writableL2(l1i);
            img.setEntry(t, l2i, 0, target === 'zero');
          }
        } finally {
          unlock();
        }
      } finally {
        unlockClusters();
      }
    }
    for (const r of partial) await this.writeRange(req, r.rel, r.abs, r.len, true);
    await this.afterAllocation();
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
