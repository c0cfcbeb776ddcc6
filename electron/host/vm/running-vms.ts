// The VMs this process runs (a RunningVm each), the crash each one that died left, and what follows
// from them: a VM's current config (a running VM's own copy wins over the stored one), what the
// API shows of it, whether another Spindle process runs it (run-lock.ts), and the refusals the
// manager's parts share.
import type { VmInfo } from '../../shared/api.js';
import type { VmConfig } from '../../shared/model.js';
import { SpindleError } from '../../shared/errors.js';
import { measuredByBench, type DiskLeases } from '../disks/disk-leases.js';
import type { VmConfigService } from './config-service.js';
import type { LiveVmDisks } from './live-disks.js';
import type { LockOwner } from './lock-file.js';
import type { QmpClient } from './qmp.js';
import { RunLocks } from './run-lock.js';
import type { RunningVm } from './running-vm.js';
import { vmInfo } from './vm-info.js';

export type Crash = NonNullable<VmInfo['crash']>;
/** A running VM that has finished starting, its QMP connected. */
export type LiveVm = RunningVm & { qmp: QmpClient };

export class RunningVms {
  private readonly running = new Map<string, RunningVm>();
  private readonly crashes = new Map<string, Crash>();

  constructor(
    private readonly configs: VmConfigService,
    private readonly runLocks: RunLocks,
    private readonly leases: DiskLeases,
  ) {}

  get(id: string): RunningVm | undefined {
    return this.running.get(id);
  }

  has(id: string): boolean {
    return this.running.has(id);
  }

  add(id: string, run: RunningVm): void {
    this.running.set(id, run);
  }

  /** Forgets `run`, unless a newer run of VM `id` took its place. */
  forget(id: string, run: RunningVm): void {
    if (this.running.get(id) === run) this.running.delete(id);
  }

  /** Every VM this process runs, by id. */
  all(): IterableIterator<[string, RunningVm]> {
    return this.running.entries();
  }

  recordCrash(id: string, crash: Crash): void {
    this.crashes.set(id, crash);
  }

  clearCrash(id: string): void {
    this.crashes.delete(id);
  }

  config(id: string): VmConfig {
    return this.running.get(id)?.config ?? this.configs.stored(id);
  }

  info(config: VmConfig): VmInfo {
    const run = this.running.get(config.id);
    return vmInfo(config, run, run ? undefined : this.crashes.get(config.id), this.elsewhere(config.id));
  }

  /** Which other process runs VM `id` (run-lock.ts), or null. */
  elsewhere(id: string): LockOwner | null {
    return this.running.has(id) ? null : this.runLocks.owner(id);
  }

  /** Refuses a change to a VM that another Spindle process runs (its copy of the config would win). */
  refuseIfElsewhere(config: VmConfig, what: string): void {
    const owner = this.elsewhere(config.id);
    if (owner) throw RunLocks.elsewhere(config, owner, what);
  }

  notRunning(id: string, what: string): SpindleError {
    const config = this.config(id);
    const owner = this.elsewhere(id);
    return owner
      ? RunLocks.elsewhere(config, owner, what)
      : new SpindleError('CONFLICT', `VM '${config.name}' is not running, so it cannot ${what}.`);
  }

  /** VM `id` running here and done starting, or the refusal to do `what` to it. */
  live(id: string, what: string): LiveVm {
    const run = this.running.get(id);
    if (!run || !run.qmp || run.exited) throw this.notRunning(id, what);
    if (run.state === 'starting') throw new SpindleError('CONFLICT', `VM '${run.config.name}' is still starting; try again in a moment.`);
    return run as LiveVm;
  }

  /** Running VM `id`'s disk servers, for releasing its disks (live-disks.ts). */
  liveDisks(id: string): LiveVmDisks {
    const live = this.live(id, 'release its disks');
    return { state: live.state, name: live.config.name, host: (diskId) => live.disks.get(diskId)?.host ?? undefined };
  }

  /** Which running VM (other than `vmId`), or which other part of Spindle, uses `path`, as a refusal sentence. */
  usedByOther(path: string, vmId: string | undefined): string | undefined {
    const holder = this.leases.holder(path);
    if (holder?.kind === 'vm' && holder.vmId !== vmId) return `${path} is in use by the running VM '${holder.vmName()}'.`;
    if (holder?.kind === 'bench') return measuredByBench(path);
    return undefined;
  }
}
