// One qcow2 image's metadata in memory: header, L1 table, the L2 cache, refcounts, and the order
// in which changes reach the file (QEMU docs/interop/qcow2.txt; ordering as QEMU's qcow2 cache
// dependencies): refcount blocks, then L2 tables, then the L1 table, each set made durable before
// the next is written, so after a crash the file holds at most leaked clusters. References that
// went away drop their refcounts only once the file no longer holds them.
import { SpindleError } from '../../../shared/errors.js';
import type { Lower } from './lower.js';
import { encodeL1, l1TableOffset, normalL2Offset, readL1, readL2, writeL2, type L2Entry } from './entries.js';
import { be32, be64, OFF, type Qcow2Header } from './header.js';
import { Refcounts } from './refcounts.js';
import { TableCache, type CachedTable } from './table-cache.js';

/** A simple FIFO mutex: metadata changes and their writeback never interleave. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const prev = this.tail;
    this.tail = prev.then(() => next);
    return prev.then(() => release);
  }
}

export interface ImageOptions {
  /** Bytes of L2 tables kept in memory. */
  l2CacheBytes: number;
  onStall(): void;
}

interface PendingFree {
  cluster: number;
  /** Punch a hole when its refcount reaches 0 (data clusters). */
  punch: boolean;
}

export class Qcow2Image {
  readonly cs: number;
  readonly cb: number;
  readonly l2Entries: number;
  readonly l2: TableCache;
  readonly refs: Refcounts;
  readonly lock = new Mutex();
  private l1: Buffer;
  private l1Dirty = false;
  private readonly l2Set = new Set<number>();
  private pendingFrees: PendingFree[] = [];

  constructor(
    readonly path: string,
    readonly io: Lower,
    readonly h: Qcow2Header,
    l1: Buffer,
    refTable: Buffer,
    fileEnd: number,
    o: ImageOptions,
  ) {
    this.cb = h.clusterBits;
    this.cs = h.clusterSize;
    this.l2Entries = this.cs / 8;
    this.l1 = l1;
    this.l2 = new TableCache(Math.max(2, Math.floor(o.l2CacheBytes / this.cs)), (off) => this.io.read(off, this.cs));
    this.refs = new Refcounts(io, {
      clusterBits: h.clusterBits,
      refcountOrder: h.refcountOrder,
      tableOffset: h.refTableOffset,
      tableClusters: h.refTableClusters,
      table: refTable,
      fileEnd,
      cacheTables: Math.max(4, Math.floor((4 << 20) / this.cs)),
      moveTable: async (offset, clusters) => {
        await this.io.write(OFF.refTableOffset, Buffer.concat([be64(offset), be32(clusters)]));
        await this.io.flush();
      },
      onStall: o.onStall,
    });
    for (let i = 0; i < h.l1Size; i++) {
      const e = this.l1Entry(i);
      if (e.offset) this.l2Set.add(e.offset);
    }
  }

  get l1Size(): number {
    return this.l1.length / 8;
  }

  l1Entry(i: number): { offset: number; copied: boolean; invalid: boolean } {
    return readL1(this.l1.readUInt32BE(i * 8), this.l1.readUInt32BE(i * 8 + 4));
  }

  /** Whether a host cluster holds metadata a data write must never touch (QEMU's overlap check). */
  isMetadata(cluster: number): boolean {
    if (cluster === 0) return true;
    const l1c = this.h.l1Offset / this.cs;
    if (cluster >= l1c && cluster < l1c + Math.ceil(this.l1.length / this.cs)) return true;
    return this.l2Set.has(cluster * this.cs) || this.refs.isMetadata(cluster);
  }

  private damaged(what: string): SpindleError {
    return new SpindleError('IO_ERROR', `${this.path}: the qcow2 metadata is damaged: ${what} (qemu-img check ${this.path} tells more).`);
  }

  /** The L2 table of L1 entry `i` when cached (null: none allocated; undefined: not cached). */
  peekL2(i: number): CachedTable | null | undefined {
    const e = this.l1Entry(i);
    if (!e.offset) return null;
    return this.l2.peek(e.offset) ?? undefined;
  }

  /** The hot path: the host cluster behind guest cluster `gc` when its L2 table is cached and
   *  the entry is a normal, valid cluster (COPIED in L1 and L2 when `forWrite`); -1 otherwise,
   *  for the general path. Makes no object. */
  cachedHost(gc: number, forWrite: boolean): number {
    const i = Math.floor(gc / this.l2Entries);
    if (i >= this.l1Size) return -1;
    const tableOffset = l1TableOffset(this.l1.readUInt32BE(i * 8), this.l1.readUInt32BE(i * 8 + 4), forWrite);
    const t = tableOffset ? this.l2.peek(tableOffset) : null;
    return t ? normalL2Offset(t.data, gc % this.l2Entries, this.cb, forWrite) : -1;
  }

  async loadL2(i: number): Promise<CachedTable | null> {
    const e = this.l1Entry(i);
    if (!e.offset) return null;
    if (e.invalid || e.offset % this.cs || e.offset + this.cs > this.refs.fileEnd)
      throw this.damaged(`L1 entry ${i} points to ${e.offset}`);
    return this.l2.get(e.offset);
  }

  entry(table: CachedTable | null, index: number): L2Entry {
    if (!table) return { kind: 'unallocated', offset: 0, copied: false, compressedBytes: 0, invalid: false };
    return readL2(table.data, index, this.cb);
  }

  /** The L2 table of L1 entry `i`, writable in place: made when missing, copied when shared
   *  (an L1 entry without COPIED, e.g. after qemu-img snapshot). Under the lock. */
  async writableL2(i: number): Promise<CachedTable> {
    const e = this.l1Entry(i);
    if (e.offset && e.copied) {
      const t = await this.loadL2(i);
      return t!;
    }
    const old = e.offset ? await this.loadL2(i) : null;
    const [off] = await this.refs.allocate(1);
    const data = Buffer.alloc(this.cs);
    if (old) old.data.copy(data);
    const t = this.l2.insert(off!, data);
    this.l2Set.add(off!);
    encodeL1(this.l1, i, off!, true);
    this.l1Dirty = true;
    if (old) this.pendingFrees.push({ cluster: e.offset / this.cs, punch: false });
    return t;
  }

  /** Points L2 entry (table, index) at `offset` (COPIED) or makes it zero/unallocated, and queues
   *  the free of what it pointed to. Under the lock. */
  setEntry(table: CachedTable, index: number, offset: number, zero: boolean): void {
    const old = readL2(table.data, index, this.cb);
    this.queueFree(old);
    writeL2(table.data, index, offset, offset !== 0, zero);
    this.l2.markDirty(table);
  }

  queueFree(old: L2Entry): void {
    if (old.kind === 'normal' || (old.kind === 'zero' && old.offset)) {
      this.pendingFrees.push({ cluster: old.offset / this.cs, punch: true });
    } else if (old.kind === 'compressed') {
      // QEMU frees the 512-byte sectors the compressed data spans, counted per host cluster.
      const start = old.offset - (old.offset % 512);
      const end = start + Math.ceil((old.compressedBytes + (old.offset % 512)) / 512) * 512;
      for (let c = Math.floor(start / this.cs); c * this.cs < end; c++) this.pendingFrees.push({ cluster: c, punch: false });
    }
  }

  /** Frees clusters allocated for a write that failed before anything referenced them. */
  async unallocate(offsets: number[]): Promise<void> {
    for (const off of offsets) await this.refs.change(off / this.cs, -1);
  }

  get dirty(): boolean {
    return this.l1Dirty || this.refs.dirty || this.l2.dirtyTables().length > 0 || this.pendingFrees.length > 0;
  }

  /**
   * Writes every change back in dependency order and makes it durable (a guest FLUSH, close):
   * refcount blocks (and table), flush, L2 tables, flush, L1, flush. Then the refcounts of
   * references that are gone from the file drop, and freed data clusters become holes.
   * Caller holds the lock.
   */
  async writeBack(): Promise<void> {
    const wroteRefs = await this.refs.writeBack();
    const l2 = this.l2.dirtyTables();
    if ((l2.length || this.l1Dirty) && wroteRefs) await this.io.flush();
    await Promise.all(
      l2.map(async (t) => {
        t.dirty = false;
        try {
          await this.io.write(t.offset, t.data);
        } catch (err) {
          this.l2.markDirty(t);
          throw err;
        }
      }),
    );
    if (this.l1Dirty) {
      if (l2.length) await this.io.flush();
      this.l1Dirty = false;
      try {
        await this.io.write(this.h.l1Offset, this.l1);
      } catch (err) {
        this.l1Dirty = true;
        throw err;
      }
    }
    await this.io.flush();
    this.l2.trim();
    const frees = this.pendingFrees;
    this.pendingFrees = [];
    for (const f of frees) {
      const left = await this.refs.change(f.cluster, -1);
      if (left === 0) {
        this.l2Set.delete(f.cluster * this.cs);
        if (f.punch) await this.io.discard(f.cluster * this.cs, this.cs).catch(() => undefined);
      }
    }
  }

  /** Grows the virtual size (the L1 table too when it must). Caller holds the lock. */
  async grow(newSize: number): Promise<void> {
    const need = Math.ceil(newSize / (this.l2Entries * this.cs));
    if (need > this.l1Size) {
      if (need * 8 > 32 << 20)
        throw new SpindleError('INVALID_ARGUMENT', `${this.path} cannot grow to ${newSize} bytes: its L1 table would pass 32 MiB.`);
      await this.writeBack();
      const entries = Math.max(need, Math.ceil(this.l1Size * 1.5));
      const clusters = Math.ceil((entries * 8) / this.cs);
      const off = await this.refs.allocateContiguous(clusters);
      const l1 = Buffer.alloc(clusters * this.cs);
      this.l1.copy(l1);
      await this.refs.writeBack();
      await this.io.write(off, l1);
      await this.io.flush();
      const oldOffset = this.h.l1Offset;
      const oldClusters = Math.ceil(this.l1.length / this.cs);
      // size, l1_size and l1_table_offset are bytes 24..47: one write.
      const fields = Buffer.concat([be64(newSize), be32(0), be32(entries), be64(off)]);
      fields.writeUInt32BE(this.h.cryptMethod, 8);
      await this.io.write(OFF.size, fields);
      await this.io.flush();
      this.l1 = l1.subarray(0, entries * 8);
      this.h.l1Offset = off;
      this.h.l1Size = entries;
      for (let c = 0; c < oldClusters; c++) await this.refs.change(oldOffset / this.cs + c, -1);
    } else {
      await this.io.write(OFF.size, be64(newSize));
      await this.io.flush();
    }
    this.h.sizeBytes = newSize;
  }
}
