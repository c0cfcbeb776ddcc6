// Operations on a VM's image files: clone (clone.ts) and snapshots (snapshots.ts). On a stopped VM
// each holds the VM's run lock while it works, so no Spindle process (this one or another) starts
// the VM while its images are copied or their snapshot tables rewritten; on a VM this process runs,
// snapshots are taken and deleted with its disks released under the paused guest (live-disks.ts).
// The manager calls these under the VM's own lock.
import type { VmConfig } from '../../shared/model.js';
import { SpindleError } from '../../shared/errors.js';
import type { VmStore } from './store.js';
import type { RunLocks } from './run-lock.js';
import { copyNvram, makeCloneFiles, planClone } from './clone.js';
import { imagesDir, nvramPath } from './vm-files.js';
import {
  createSnapshot,
  deleteSnapshot,
  listSnapshots,
  revertSnapshot,
  snapshotDisks,
  type VmSnapshot,
  type DiskSnapshot,
} from './snapshots.js';
import { withDisksReleased, type LiveVmDisks } from './live-disks.js';
import { rmSync } from 'node:fs';

export type SnapshotOp = 'create' | 'revert' | 'delete';

export class OfflineOps {
  constructor(
    private readonly store: VmStore,
    private readonly runLocks: RunLocks,
    private readonly env: NodeJS.ProcessEnv,
    private readonly nvramDir?: string,
  ) {}

  private withRunLock<T>(config: VmConfig, fn: () => Promise<T>): Promise<T> {
    const lock = this.runLocks.claim(config); // refuses naming the process that runs it
    return fn().finally(() => lock.release());
  }

  /** A new stopped VM `name` from stopped VM `source`; returns its id. */
  clone(source: VmConfig, name: string, linked: boolean): Promise<string> {
    this.store.refuseTakenName(name);
    return this.withRunLock(source, async () => {
      const id = this.store.newId(name);
      const dir = imagesDir(this.env);
      const { config, steps } = planClone(source, id, name, linked, dir);
      await makeCloneFiles(steps, linked, dir, this.env);
      const vars = nvramPath(this.store.dir, id, this.nvramDir);
      try {
        copyNvram(nvramPath(this.store.dir, source.id, this.nvramDir), vars);
        this.store.create(config);
      } catch (err) {
        for (const s of steps) rmSync(s.to, { force: true });
        rmSync(vars, { force: true });
        throw err;
      }
      return id;
    });
  }

  list(config: VmConfig): Promise<{ snapshots: VmSnapshot[]; disks: DiskSnapshot[] }> {
    return listSnapshots(config, this.env);
  }

  /** `live`: the VM runs in this process; its disks are released around qemu-img (live-disks.ts). Revert needs it stopped. */
  snapshot(config: VmConfig, op: SnapshotOp, name: string, live?: LiveVmDisks): Promise<void> {
    if (live) {
      if (op === 'revert')
        throw new SpindleError(
          'CONFLICT',
          `VM '${config.name}' is running; shut it down to revert it to '${name}' (a guest must not see its disk change under it).`,
        );
      const disks = snapshotDisks(config).map((d) => d.id);
      return withDisksReleased(live, disks, () =>
        op === 'create' ? createSnapshot(config, name, this.env) : deleteSnapshot(config, name, this.env),
      );
    }
    return this.withRunLock(config, () =>
      op === 'create'
        ? createSnapshot(config, name, this.env)
        : op === 'revert'
          ? revertSnapshot(config, name, this.env)
          : deleteSnapshot(config, name, this.env),
    );
  }
}
