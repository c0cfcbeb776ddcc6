// Changes to a VM as a whole: created, its settings updated, its CD-ROM media changed, deleted
// with the files it owns (vm-files.ts), cloned (clone.ts) and its snapshots taken, reverted and
// deleted (snapshots.ts), the image-file work locked by offline-ops.ts. A VM another Spindle
// process runs is refused. Every method but create runs under the VM's lock, taken by the manager.
import { existsSync } from 'node:fs';
import type { ParsedParams } from '../../shared/api.js';
import { SpindleError } from '../../shared/errors.js';
import { changeMedia, mediaConfig } from './media.js';
import { OfflineOps, type SnapshotOp } from './offline-ops.js';
import type { VmContext } from './vm-context.js';
import { nvramPath, planDiskRemoval, removeFiles } from './vm-files.js';

export type DeleteResult = { deletedFiles: string[]; keptFiles: { path: string; reason: string }[] };

export class VmChanges {
  private readonly offline: OfflineOps;

  constructor(
    private readonly ctx: VmContext,
    private readonly nvramDir?: string,
  ) {
    this.offline = new OfflineOps(ctx.store, ctx.runLocks, ctx.env, nvramDir);
  }

  /** Returns the new VM's id. */
  create(input: ParsedParams<'vm.create'>): string {
    const config = this.ctx.configs.create(input);
    this.ctx.events.changed(config.id);
    return config.id;
  }

  async update(id: string, patch: ParsedParams<'vm.update'>['patch']): Promise<void> {
    const { vms } = this.ctx;
    const config = vms.config(id);
    const run = vms.get(id);
    if (!run) vms.refuseIfElsewhere(config, 'be changed');
    const next = this.ctx.configs.update(config, patch, !!run);
    if (run) run.config = next;
    this.ctx.events.changed(id);
  }

  /** Inserts or ejects a CD-ROM (media.ts); a running VM's drive changes at once. */
  async media(id: string, drive: string, path: string | null): Promise<void> {
    const { vms, configs } = this.ctx;
    const config = vms.config(id);
    const run = vms.get(id);
    if (!run) vms.refuseIfElsewhere(config, 'change its CD-ROMs');
    const next = mediaConfig(config, drive, path, !!run, (p) => configs.checkMedia([p]));
    if (run) await changeMedia(vms.live(id, 'change its CD-ROMs'), drive, path);
    if (next !== config) {
      configs.save(next);
      if (run) run.config = next;
    }
    this.ctx.events.changed(id);
  }

  /** `deleteDisks`: also the images Spindle made for it and its UEFI variables (vm-files.ts says which). */
  async delete(id: string, deleteDisks: boolean): Promise<DeleteResult> {
    const { vms } = this.ctx;
    const config = vms.config(id);
    if (vms.has(id)) throw new SpindleError('CONFLICT', `VM '${config.name}' is running; shut it down before deleting it.`);
    const vars = nvramPath(this.ctx.store.dir, id, this.nvramDir);
    const plan = deleteDisks
      ? planDiskRemoval(config, this.ctx.store.loadAll().vms, this.ctx.env, existsSync(vars) ? vars : undefined)
      : null;
    this.ctx.configs.delete(config, () => vms.refuseIfElsewhere(config, 'be deleted'));
    vms.clearCrash(id);
    this.ctx.events.deleted(id);
    return plan
      ? removeFiles(plan)
      : { deletedFiles: [], keptFiles: config.disks.map((d) => ({ path: d.path, reason: 'kept as asked.' })) };
  }

  /** A new VM from a stopped one: full copies of its disks, or qcow2 overlays on them (`linked`). Returns its id. */
  async clone(id: string, name: string, linked: boolean): Promise<string> {
    const source = this.ctx.vms.config(id);
    if (this.ctx.vms.has(id))
      throw new SpindleError(
        'CONFLICT',
        `VM '${source.name}' is running; shut it down to clone it (a copy of disks being written is not consistent).`,
      );
    const newId = await this.offline.clone(source, name, linked);
    this.ctx.events.changed(newId);
    return newId;
  }

  snapshots(id: string): ReturnType<OfflineOps['list']> {
    return this.offline.list(this.ctx.vms.config(id));
  }

  /** On a VM running here its disks are released around the change (live-disks.ts). */
  async snapshot(id: string, op: SnapshotOp, name: string): Promise<void> {
    const { vms } = this.ctx;
    if (!vms.has(id)) vms.refuseIfElsewhere(vms.config(id), 'change its snapshots');
    await this.offline.snapshot(vms.config(id), op, name, vms.has(id) ? vms.liveDisks(id) : undefined);
    this.ctx.events.changed(id);
  }
}
