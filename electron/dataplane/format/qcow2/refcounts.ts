// Host cluster management (QEMU docs/interop/qcow2.txt, "Host cluster management"): the refcount
// table and its blocks, the allocator of free clusters, and the file's growth. Refcounts change in
// memory first; writeBack() writes the changed blocks (and, after a flush, the table), which the
// driver does before any L2/L1 reference to a new cluster reaches the file. A refcount only drops
// once the reference that held it is gone from the file (the driver's pending frees).
import { SpindleError } from '../../../shared/errors.js';
import type { Lower } from './lower.js';
import { getRefcount, maxRefcount, setRefcount } from './entries.js';
import { TableCache, type CachedTable } from './table-cache.js';

export interface RefcountOptions {
  clusterBits: number;
  refcountOrder: number;
  tableOffset: number;
  tableClusters: number;
  table: Buffer;
  fileEnd: number;
  /** Refcount blocks kept in memory. */
  cacheTables: number;
  /** Writes the header's refcount table offset and size and makes it durable. */
  moveTable(offset: number, clusters: number): Promise<void>;
  /** An allocation waited for the file to grow. */
  onStall(): void;
  /** Bytes the file grows by at least when it must (rounded to clusters). */
  growChunk?: number;
}

const MAX_TABLE_BYTES = 8 << 20;

export class Refcounts {
  readonly cache: TableCache;
  private readonly cs: number;
  private readonly order: number;
  /** Entries per refcount block, as a shift. */
  private readonly blockShift: number;
  private table: Buffer;
  private tableOffset: number;
  private tableClusters: number;
  private tableDirty = false;
  /** Bytes of the image file (with space preallocated ahead). */
  fileEnd: number;
  private freeHint = 0;
  private readonly blockSet = new Set<number>();

  constructor(
    private readonly lower: Lower,
    private readonly o: RefcountOptions,
  ) {
    this.cs = 2 ** o.clusterBits;
    this.order = o.refcountOrder;
    this.blockShift = o.clusterBits + 3 - o.refcountOrder;
    this.table = o.table;
    this.tableOffset = o.tableOffset;
    this.tableClusters = o.tableClusters;
    this.fileEnd = o.fileEnd;
    this.cache = new TableCache(Math.max(4, o.cacheTables), (off) => this.lower.read(off, this.cs));
    this.rebuildBlockSet();
  }

  get tableEntries(): number {
    return this.table.length / 8;
  }

  /** Host offset of refcount block `i` (0: none). */
  blockOffset(i: number): number {
    if (i >= this.tableEntries) return 0;
    const hi = this.table.readUInt32BE(i * 8);
    const lo = this.table.readUInt32BE(i * 8 + 4);
    return hi * 2 ** 32 + ((lo & 0xffff_fe00) >>> 0);
  }

  /** Whether a host cluster holds the refcount table or a refcount block (overlap checks). */
  isMetadata(cluster: number): boolean {
    const t = this.tableOffset / this.cs;
    if (cluster >= t && cluster < t + this.tableClusters) return true;
    return this.blockSet.has(cluster * this.cs);
  }

  private rebuildBlockSet(): void {
    this.blockSet.clear();
    for (let i = 0; i < this.tableEntries; i++) {
      const off = this.blockOffset(i);
      if (off) this.blockSet.add(off);
    }
  }

  private setBlockOffset(i: number, offset: number): void {
    this.table.writeUInt32BE(Math.floor(offset / 2 ** 32), i * 8);
    this.table.writeUInt32BE((offset % 2 ** 32) >>> 0, i * 8 + 4);
    this.tableDirty = true;
    this.blockSet.add(offset);
  }

  /** The clusters the refcount structures themselves occupy (for overlap checks). */
  metadataClusters(): number[] {
    const out: number[] = [];
    for (let c = 0; c < this.tableClusters; c++) out.push(this.tableOffset / this.cs + c);
    for (let i = 0; i < this.tableEntries; i++) {
      const off = this.blockOffset(i);
      if (off) out.push(off / this.cs);
    }
    return out;
  }

  get dirty(): boolean {
    return this.tableDirty || this.cache.dirtyTables().length > 0;
  }

  async get(cluster: number): Promise<number> {
    const off = this.blockOffset(Math.floor(cluster / 2 ** this.blockShift));
    if (!off) return 0;
    const t = await this.cache.get(off);
    return getRefcount(t.data, cluster % 2 ** this.blockShift, this.order);
  }

  /** Adds `delta` to a cluster's refcount; throws for an overflow or a refcount below 0 (a damaged image). */
  async change(cluster: number, delta: number): Promise<number> {
    const t = await this.ensureBlock(Math.floor(cluster / 2 ** this.blockShift));
    const i = cluster % 2 ** this.blockShift;
    const v = getRefcount(t.data, i, this.order) + delta;
    if (v < 0 || v > maxRefcount(this.order))
      throw new SpindleError(
        'IO_ERROR',
        `The refcount of host cluster ${cluster} would become ${v}: the image's refcounts are damaged (qemu-img check -r all repairs them).`,
      );
    setRefcount(t.data, i, this.order, v);
    this.cache.markDirty(t);
    if (v === 0 && cluster < this.freeHint) this.freeHint = cluster;
    return v;
  }

  /** Allocates `n` free clusters (the lowest free ones, so mostly contiguous) with refcount 1;
   *  returns their host offsets in ascending order. */
  async allocate(n: number): Promise<number[]> {
    const out: number[] = [];
    for (let c = this.freeHint; out.length < n; c++) {
      const t = await this.ensureBlock(Math.floor(c / 2 ** this.blockShift));
      if (getRefcount(t.data, c % 2 ** this.blockShift, this.order) !== 0) continue;
      await this.change(c, 1);
      out.push(c);
    }
    this.freeHint = out[out.length - 1]! + 1;
    await this.cover((out[out.length - 1]! + 1) * this.cs);
    return out.map((c) => c * this.cs);
  }

  /**
   * Allocates `n` contiguous free clusters (an L1 table). Where no refcount block exists yet, each
   * one sits at the start of the range it describes, so a run longer than a block's range is
   * placed past everything the refcount table describes, where nothing is allocated.
   */
  async allocateContiguous(n: number): Promise<number> {
    const per = 2 ** this.blockShift;
    let start = this.freeHint;
    let run = 0;
    const limit = this.tableEntries * per;
    for (let c = start; c < limit && run < n; c++) {
      const bi = Math.floor(c / per);
      if (!this.blockOffset(bi)) break; // fresh space: handled below
      const t = await this.cache.get(this.blockOffset(bi));
      if (getRefcount(t.data, c % per, this.order) === 0) {
        if (run === 0) start = c;
        run++;
      } else run = 0;
    }
    if (run < n) {
      // Past the last cluster any refcount block covers and past the file: free; its blocks get
      // made by change() below, each at the start of its own range, so skip those clusters.
      start = Math.max(limit, Math.ceil(this.fileEnd / this.cs));
      for (;;) {
        let ok = true;
        for (let c = start; c < start + n; c++) if (c % per === 0 && !this.blockOffset(Math.floor(c / per))) ok = false;
        if (ok) break;
        start++;
      }
    }
    for (let c = start; c < start + n; c++) await this.change(c, 1);
    await this.cover((start + n) * this.cs);
    return start * this.cs;
  }

  /** Makes the file at least `end` bytes long, growing it ahead in chunks through the engine
   *  (write-zeroes: fallocate on a pool thread or io_uring), so data writes never extend it. */
  async cover(end: number): Promise<void> {
    if (end <= this.fileEnd) return;
    this.o.onStall();
    const chunk = Math.min(Math.max(this.fileEnd / 8, this.o.growChunk ?? 1 << 20), 64 << 20);
    const target = Math.ceil(Math.max(end, this.fileEnd + chunk) / this.cs) * this.cs;
    await this.lower.writeZeroes(this.fileEnd, target - this.fileEnd);
    this.fileEnd = target;
  }

  /** The refcount block covering clusters [i << blockShift, (i+1) << blockShift), made when missing. */
  private async ensureBlock(i: number): Promise<CachedTable> {
    let off = this.blockOffset(i);
    if (off) return this.cache.get(off);
    if (i >= this.tableEntries) await this.growTable(i + 1);
    off = this.blockOffset(i);
    if (off) return this.cache.get(off);
    // No block means every cluster it covers is free: it describes itself from its first cluster.
    const first = i * 2 ** this.blockShift;
    off = first * this.cs;
    const data = Buffer.alloc(this.cs);
    setRefcount(data, 0, this.order, 1);
    await this.cover(off + this.cs);
    const t = this.cache.insert(off, data);
    this.setBlockOffset(i, off);
    return t;
  }

  /**
   * A larger refcount table with the blocks that cover it, placed past everything the old table
   * can describe (all free there), written, made durable, then named in the header (QEMU's
   * refcount-area approach in block/qcow2-refcount.c). The old table's clusters are freed.
   */
  private async growTable(minEntries: number): Promise<void> {
    const per = 2 ** this.blockShift;
    const entriesPerCluster = this.cs / 8;
    const first = Math.max(this.tableEntries * per, Math.ceil(this.fileEnd / this.cs));
    let entries = Math.max(minEntries, this.tableEntries * 2);
    let tc = 0;
    let nb = 1;
    for (;;) {
      tc = Math.ceil(entries / entriesPerCluster);
      const last = first + tc + nb - 1;
      const need = Math.floor(last / per) - Math.floor(first / per) + 1;
      const maxIndex = Math.floor(last / per);
      if (need <= nb && maxIndex < tc * entriesPerCluster) break;
      nb = Math.max(nb, need);
      entries = Math.max(entries, maxIndex + 1);
    }
    if (tc * this.cs > MAX_TABLE_BYTES) throw new SpindleError('NO_SPACE', 'The image would need a refcount table larger than 8 MiB.');
    // The changed blocks the new table names must be on disk before it is.
    await this.writeBlocks();
    const table = Buffer.alloc(tc * this.cs);
    this.table.copy(table);
    const b0 = Math.floor(first / per);
    const blocks: Buffer[] = [];
    for (let k = 0; k < nb; k++) blocks.push(Buffer.alloc(this.cs));
    for (let c = first; c < first + tc + nb; c++) setRefcount(blocks[Math.floor(c / per) - b0]!, c % per, this.order, 1);
    await this.cover((first + tc + nb) * this.cs);
    const writes: Promise<void>[] = [];
    for (let k = 0; k < nb; k++) {
      const off = (first + tc + k) * this.cs;
      table.writeUInt32BE(Math.floor(off / 2 ** 32), (b0 + k) * 8);
      table.writeUInt32BE((off % 2 ** 32) >>> 0, (b0 + k) * 8 + 4);
      writes.push(this.lower.write(off, blocks[k]!));
    }
    writes.push(this.lower.write(first * this.cs, table));
    await Promise.all(writes);
    await this.lower.flush();
    const oldOffset = this.tableOffset;
    const oldClusters = this.tableClusters;
    await this.o.moveTable(first * this.cs, tc);
    this.table = table;
    this.tableOffset = first * this.cs;
    this.tableClusters = tc;
    this.tableDirty = false;
    this.rebuildBlockSet();
    for (let k = 0; k < nb; k++) this.cache.insert((first + tc + k) * this.cs, blocks[k]!).dirty = false;
    // The header no longer names the old table: its clusters are free.
    for (let c = 0; c < oldClusters; c++) await this.change(oldOffset / this.cs + c, -1);
  }

  private async writeBlocks(): Promise<boolean> {
    const dirty = this.cache.dirtyTables();
    await Promise.all(
      dirty.map(async (t) => {
        t.dirty = false;
        try {
          await this.lower.write(t.offset, t.data);
        } catch (err) {
          this.cache.markDirty(t);
          throw err;
        }
      }),
    );
    this.cache.trim();
    return dirty.length > 0;
  }

  /** Writes changed refcount blocks, then (after a flush, so no entry names an unwritten block)
   *  the table. Returns whether anything was written. */
  async writeBack(): Promise<boolean> {
    const wrote = await this.writeBlocks();
    if (!this.tableDirty) return wrote;
    await this.lower.flush();
    this.tableDirty = false;
    try {
      await this.lower.write(this.tableOffset, this.table);
    } catch (err) {
      this.tableDirty = true;
      throw err;
    }
    return true;
  }
}
