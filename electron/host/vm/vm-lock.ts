// One mutex per VM as a promise chain: every lifecycle call (start, shutdown, force off, pause,
// resume, reset, update, delete, disk attach/detach/change) runs after the ones issued before it
// on the same VM, never two at once; different VMs never wait for each other.
export class VmLocks {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` once every call queued before it on VM `id` has settled (resolved or failed). */
  run<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.tails.set(id, settled);
    void settled.then(() => {
      if (this.tails.get(id) === settled) this.tails.delete(id);
    });
    return next;
  }

  /** Whether a call on VM `id` runs or waits right now. */
  busy(id: string): boolean {
    return this.tails.has(id);
  }
}
