// Operations on a stopped VM's image files: clone (clone.ts) and snapshots (snapshots.ts). Each
// holds the VM's run lock while it works, so no Spindle process (this one or another) starts the
// VM while its images are copied or their snapshot tables rewritten. The manager calls these
// under the VM's own lock and refuses a VM it runs first.
import type { VmConfig } from '../../shared/model.js';
import { SpindleError } from '../../shared/errors.js';
import type { VmStore } from './store.js';
import type { RunLocks } from './run-lock.js';
import { copyNvram, makeCloneFiles, planClone } from './clone.js';
import { imagesDir, nvramPath } from './vm-files.js';
import { createSnapshot, deleteSnapshot, listSnapshots, revertSnapshot, type VmSnapshot, type DiskSnapshot } from './snapshots.js';
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

  snapshot(config: VmConfig, op: SnapshotOp, name: string, running: boolean): Promise<void> {
    if (running) {
      const what = op === 'create' ? 'take a snapshot' : op === 'revert' ? `revert it to '${name}'` : `delete snapshot '${name}'`;
      throw new SpindleError(
        'CONFLICT',
        `VM '${config.name}' is running; shut it down to ${what}. (Snapshots of a running VM need Spindle to release its disks under the paused guest, which this version does not do yet.)`,
      );
    }
    return this.withRunLock(config, () =>
      op === 'create'
        ? createSnapshot(config, name, false, this.env)
        : op === 'revert'
          ? revertSnapshot(config, name, false, this.env)
          : deleteSnapshot(config, name, false, this.env),
    );
  }
}
