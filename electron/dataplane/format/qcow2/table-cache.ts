// A cache of cluster-sized tables (L2 tables, refcount blocks) keyed by host offset, least
// recently used first out (a use stamps the table: a hit must not delete and re-insert it, which
// makes V8 reallocate the Map's storage on every guest request). Dirty tables stay until written back; the cache may briefly hold more
// than its bound (a dirty table is never dropped), and trim() says which clean ones can go.

export interface CachedTable {
  offset: number;
  data: Buffer;
  dirty: boolean;
  /** The cache's clock at the last use. */
  used: number;
}

export class TableCache {
  private readonly tables = new Map<number, CachedTable>();
  private readonly loading = new Map<number, Promise<CachedTable>>();
  hits = 0;
  misses = 0;
  private clock = 0;

  constructor(
    /** Most tables kept (at least 2). */
    readonly capacity: number,
    private readonly load: (offset: number) => Promise<Buffer>,
  ) {}

  /** The table if cached (counts a hit and refreshes it), else null. */
  peek(offset: number): CachedTable | null {
    const t = this.tables.get(offset);
    if (!t) return null;
    this.hits++;
    t.used = ++this.clock;
    return t;
  }

  async get(offset: number): Promise<CachedTable> {
    const t = this.peek(offset);
    if (t) return t;
    let p = this.loading.get(offset);
    if (!p) {
      this.misses++;
      p = this.load(offset).then((data) => {
        this.loading.delete(offset);
        const have = this.tables.get(offset);
        if (have) return have;
        const table = { offset, data, dirty: false, used: ++this.clock };
        this.tables.set(offset, table);
        this.trim();
        return table;
      });
      p.catch(() => this.loading.delete(offset));
      this.loading.set(offset, p);
    }
    return p;
  }

  /** Adds a table made in memory (a new or copied one), dirty. */
  insert(offset: number, data: Buffer): CachedTable {
    const table = { offset, data, dirty: true, used: ++this.clock };
    this.tables.set(offset, table);
    this.trim();
    return table;
  }

  /** Marks a table changed; one evicted while its holder awaited something is taken back. */
  markDirty(t: CachedTable): void {
    t.dirty = true;
    t.used = ++this.clock;
    if (this.tables.get(t.offset) !== t) this.tables.set(t.offset, t);
  }

  drop(offset: number): void {
    this.tables.delete(offset);
  }

  dirtyTables(): CachedTable[] {
    return [...this.tables.values()].filter((t) => t.dirty);
  }

  get size(): number {
    return this.tables.size;
  }

  /** Drops the least recently used clean tables while over capacity. */
  trim(): void {
    if (this.tables.size <= this.capacity) return;
    const clean = [...this.tables.values()].filter((t) => !t.dirty).sort((a, b) => a.used - b.used);
    for (const t of clean) {
      if (this.tables.size <= this.capacity) break;
      this.tables.delete(t.offset);
    }
  }

  /** Over capacity with only dirty tables left to drop: a writeback is due. */
  get needsWriteback(): boolean {
    return this.tables.size > this.capacity;
  }
}
