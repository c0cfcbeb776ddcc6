// Which disk path is in use by whom, inside this Spindle process: a running VM's disk, or the aio
// comparison writing to it. Whoever serves or writes a disk holds its lease; whoever is about to
// asks here first (a VM start or hot-plug, a comparison) and refuses with the holder's sentence.
export type LeaseHolder = { kind: 'vm'; vmId: string; diskId: string; vmName: () => string; vmState: () => string } | { kind: 'bench' };

export interface DiskLease {
  readonly path: string;
  readonly holder: LeaseHolder;
  /** Gives the path back (once; later calls do nothing). */
  release(): void;
}

export class DiskLeases {
  private readonly held = new Map<string, DiskLease>();

  /** Who holds `path` now, or null. */
  holder(path: string): LeaseHolder | null {
    return this.held.get(path)?.holder ?? null;
  }

  /** Takes `path` for `holder`. The caller has checked holder(path) first: a second claim is a bug. */
  claim(path: string, holder: LeaseHolder): DiskLease {
    const current = this.held.get(path);
    if (current) throw new Error(`${path} is leased already (${current.holder.kind}); check holder() before claim().`);
    const lease: DiskLease = {
      path,
      holder,
      release: () => {
        if (this.held.get(path) === lease) this.held.delete(path);
      },
    };
    this.held.set(path, lease);
    return lease;
  }
}

/** The refusal for giving `path` to a VM while the aio comparison writes to it. */
export const measuredByBench = (path: string): string =>
  `${path} is being measured by the aio comparison: wait for it to finish or cancel it first.`;
