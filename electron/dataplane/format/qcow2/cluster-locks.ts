// Guest clusters held by an allocating write (or a discard/write-zeroes of whole clusters): writes
// that allocate the same guest cluster wait for each other, and an in-place write does not take
// the fast path into a cluster that is held. The rest keeps the guest's queue depth.

export class ClusterLocks {
  private readonly held = new Map<number, Promise<void>>();

  has(gc: number): boolean {
    return this.held.has(gc);
  }

  /** Takes guest clusters `gcs` (in ascending order, so two writes cannot deadlock);
   *  resolves to the function that releases them all. */
  async lock(gcs: number[]): Promise<() => void> {
    const sorted = [...new Set(gcs)].sort((a, b) => a - b);
    const releases: (() => void)[] = [];
    for (const gc of sorted) {
      for (let held = this.held.get(gc); held; held = this.held.get(gc)) await held;
      let release!: () => void;
      this.held.set(gc, new Promise<void>((r) => (release = r)));
      releases.push(() => {
        this.held.delete(gc);
        release();
      });
    }
    return () => releases.forEach((r) => r());
  }
}
