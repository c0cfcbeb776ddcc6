// The VM manager: the one face the API and the CLI see. It wires the parts and takes the locks:
// configs go through the config service (config-service.ts); the VMs this process runs are in
// RunningVms (running-vms.ts), each a RunningVm (running-vm.ts: QEMU, QMP, serial, state) with its
// DiskSlots (disk-slots.ts). The work is done by the parts: VmChanges (vm-changes.ts: settings,
// media, delete, clone, snapshots), VmLifecycle (vm-lifecycle.ts: start to force-off) and
// DiskChanges (disk-changes.ts). Every lifecycle call on one VM runs here under that VM's lock
// (vm-lock.ts), one after the other, so a part never needs a lock of its own.
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { ConfigProblem, DiskInput, DiskPatch, ParsedParams, VmInfo } from '../../shared/api.js';
import { vmNameKey } from '../../shared/model.js';
import { SpindleError } from '../../shared/errors.js';
import { DiskLeases } from '../disks/disk-leases.js';
import { VmConfigService, hostDeviceRefusal } from './config-service.js';
import { DiskChanges } from './disk-changes.js';
import type { DiskHost, DiskHostFactory } from './disk-host.js';
import { withDisksReleased } from './live-disks.js';
import type { OfflineOps, SnapshotOp } from './offline-ops.js';
import { RunLocks } from './run-lock.js';
import { RunningVms } from './running-vms.js';
import type { VmStore } from './store.js';
import { VmChanges, type DeleteResult } from './vm-changes.js';
import type { ManagerEvents, VmContext } from './vm-context.js';
import { VmLifecycle } from './vm-lifecycle.js';
import { VmLocks } from './vm-lock.js';

export { hostDeviceRefusal };

export interface VmManagerOptions {
  store: VmStore;
  /** Serves each disk (default: Spindle's own disk server, one IOThread per disk). */
  diskHostFactory?: DiskHostFactory;
  /** Explicit QEMU binary (tests pass a bad one); default SPINDLE_QEMU, then PATH. */
  qemuBinary?: string;
  env?: NodeJS.ProcessEnv;
  kvmPath?: string;
  /** How long an ACPI shutdown may take before the VM is forced off (default 30 s). */
  shutdownTimeoutMs?: number;
  /** Where UEFI variable stores live (default: next to the VM files). */
  nvramDir?: string;
  /** Why a host block device may not be used, or null (default: hostDeviceRefusal). */
  deviceRefusal?: (path: string) => string | null;
  /** Which disk paths are in use by whom (default: this manager's own registry). */
  leases?: DiskLeases;
}

/**
 * Events: 'vm' ({type:'changed', vm} | {type:'deleted', id}), 'disk' (DiskEvent),
 * 'serial' ({vmId, data: Buffer}).
 */
export class VmManager extends EventEmitter {
  private readonly locks = new VmLocks();
  private readonly store: VmStore;
  private readonly vms: RunningVms;
  private readonly changes: VmChanges;
  private readonly lifecycle: VmLifecycle;
  private readonly disks: DiskChanges;
  private readonly events: ManagerEvents;
  /** Which disk paths running VMs (and the aio comparison) use; the comparison asks here too. */
  readonly leases: DiskLeases;

  constructor(private readonly opts: VmManagerOptions) {
    super();
    this.leases = opts.leases ?? new DiskLeases();
    this.store = opts.store;
    const configs = new VmConfigService(opts.store, {
      ...(opts.deviceRefusal ? { deviceRefusal: opts.deviceRefusal } : {}),
      ...(opts.nvramDir ? { nvramDir: opts.nvramDir } : {}),
    });
    const runLocks = new RunLocks(opts.store);
    this.vms = new RunningVms(configs, runLocks, this.leases);
    this.events = {
      changed: (id) => this.changed(id),
      deleted: (id) => this.emit('vm', { type: 'deleted', id }),
      log: (vmId, level, message, diskId = '') => this.emit('disk', { vmId, diskId, level, message, t: Date.now() }),
      serial: (vmId, data) => this.emit('serial', { vmId, data }),
    };
    const ctx: VmContext = {
      store: opts.store,
      configs,
      runLocks,
      vms: this.vms,
      leases: this.leases,
      env: opts.env ?? process.env,
      events: this.events,
    };
    this.changes = new VmChanges(ctx, opts.nvramDir);
    this.lifecycle = new VmLifecycle(ctx, opts);
    this.disks = new DiskChanges(ctx);
  }

  // ───────────── queries ─────────────

  list(): { vms: VmInfo[]; problems: ConfigProblem[] } {
    const { vms, problems } = this.store.loadAll();
    return { vms: vms.map((c) => this.vms.info(c)), problems };
  }

  get(id: string): VmInfo {
    return this.vms.info(this.vms.config(id));
  }

  /** Accepts a VM id or its exact name (for the CLI). */
  resolve(ref: string): string {
    const { vms } = this.store.loadAll();
    const byId = vms.find((v) => v.id === ref);
    if (byId) return byId.id;
    const exact = vms.filter((v) => v.name === ref);
    const byName = exact.length ? exact : vms.filter((v) => vmNameKey(v.name) === vmNameKey(ref));
    if (byName.length === 1) return byName[0]!.id;
    if (byName.length > 1)
      throw new SpindleError('CONFLICT', `Several VMs are named '${ref}'; use the id (${byName.map((v) => v.id).join(', ')}).`);
    throw new SpindleError('NOT_FOUND', `There is no VM '${ref}'.`);
  }

  private changed(id: string): void {
    try {
      this.emit('vm', { type: 'changed', vm: this.get(id) });
    } catch {
      /* deleted meanwhile */
    }
  }

  /** Running VMs' disk servers, for the stats sampler. */
  *diskHosts(): Generator<{ vmId: string; diskId: string; host: DiskHost }> {
    for (const [vmId, run] of this.vms.all())
      for (const slot of run.disks.all()) if (slot.host) yield { vmId, diskId: slot.config.id, host: slot.host };
  }

  /** Running QEMU processes, for the stats sampler. */
  *qemuProcesses(): Generator<{ vmId: string; pid: number }> {
    for (const [vmId, run] of this.vms.all()) if (run.proc?.pid && !run.exited) yield { vmId, pid: run.proc.pid };
  }

  vncSocketPath(vmId: string): string | null {
    const run = this.vms.get(vmId);
    if (!run || run.config.display !== 'vnc' || run.state === 'starting') return null;
    return join(run.dir, 'vnc.sock');
  }

  serialBacklog(vmId: string): Buffer {
    this.vms.config(vmId);
    const run = this.vms.get(vmId);
    return run ? Buffer.concat(run.serialBacklog) : Buffer.alloc(0);
  }

  serialInput(vmId: string, data: Buffer): void {
    const run = this.vms.get(vmId);
    if (!run?.serial || run.serial.destroyed)
      throw new SpindleError('CONFLICT', `VM '${this.vms.config(vmId).name}' is not running, so its console takes no input.`);
    run.serial.write(data);
  }

  snapshots(id: string): ReturnType<OfflineOps['list']> {
    return this.changes.snapshots(id);
  }

  /** Runs `change` under VM `id`'s lock and answers with the VM as it is then. */
  private locked(id: string, change: () => Promise<void>): Promise<VmInfo> {
    return this.locks.run(id, async () => {
      await change();
      return this.get(id);
    });
  }

  // ───────────── the VM as a whole (vm-changes.ts) ─────────────

  async create(input: ParsedParams<'vm.create'>): Promise<VmInfo> {
    return this.get(this.changes.create(input));
  }

  update(id: string, patch: ParsedParams<'vm.update'>['patch']): Promise<VmInfo> {
    return this.locked(id, () => this.changes.update(id, patch));
  }

  /** Inserts or ejects a CD-ROM; a running VM's drive changes at once. */
  media(id: string, drive: string, path: string | null): Promise<VmInfo> {
    return this.locked(id, () => this.changes.media(id, drive, path));
  }

  /** `deleteDisks`: also the images Spindle made for it and its UEFI variables (vm-files.ts says which). */
  delete(id: string, opts: { deleteDisks?: boolean } = {}): Promise<DeleteResult> {
    return this.locks.run(id, () => this.changes.delete(id, !!opts.deleteDisks));
  }

  /** A new VM from a stopped one: full copies of its disks, or qcow2 overlays on them (`linked`). */
  clone(id: string, name: string, linked: boolean): Promise<VmInfo> {
    return this.locks.run(id, async () => this.get(await this.changes.clone(id, name, linked)));
  }

  snapshot(id: string, op: SnapshotOp, name: string): ReturnType<OfflineOps['list']> {
    return this.locks.run(id, async () => {
      await this.changes.snapshot(id, op, name);
      return this.changes.snapshots(id);
    });
  }

  /** Runs `fn` with every disk of running VM `id` closed by its server, the guest's I/O held (live-disks.ts). */
  withDisksReleased<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(id, () =>
      withDisksReleased(
        this.vms.liveDisks(id),
        this.vms.config(id).disks.map((d) => d.id),
        fn,
      ),
    );
  }

  // ───────────── lifecycle (vm-lifecycle.ts) ─────────────

  /** `allowBaseWrites`: start even though a disk is a linked clone's base (clone.ts refuseBaseWrites). */
  start(id: string, opts: { allowBaseWrites?: boolean } = {}): Promise<VmInfo> {
    return this.locked(id, () => this.lifecycle.start(id, !!opts.allowBaseWrites));
  }

  pause(id: string): Promise<VmInfo> {
    return this.locked(id, () => this.lifecycle.pause(id));
  }

  resume(id: string): Promise<VmInfo> {
    return this.locked(id, () => this.lifecycle.resume(id));
  }

  reset(id: string): Promise<VmInfo> {
    return this.locked(id, () => this.lifecycle.reset(id));
  }

  /**
   * ACPI power button; forced off when the guest has not powered off within the timeout. The
   * request runs under the VM's lock; the wait for the guest does not hold it, so a force-off
   * may still pull the plug meanwhile.
   */
  async shutdown(id: string, timeoutMs = this.opts.shutdownTimeoutMs ?? 30_000): Promise<VmInfo> {
    const run = await this.locks.run(id, () => this.lifecycle.pressPowerButton(id));
    // The timer is cleared once the guest powers off: a pending one would keep a CLI or test
    // process (and the app's quit) alive for the rest of the timeout.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      run.done.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs))),
    ]).finally(() => clearTimeout(timer));
    if (timedOut && !run.exited) {
      this.events.log(id, 'warning', `VM '${run.config.name}' did not power off within ${Math.round(timeoutMs / 1000)} s; forcing it off.`);
      await this.forceOff(id);
    }
    await run.done;
    return this.get(id);
  }

  /** Pulls the plug: QEMU is told to quit (SIGKILL if it does not), then the disks are closed. */
  forceOff(id: string): Promise<VmInfo> {
    return this.locked(id, () => this.lifecycle.forceOff(id));
  }

  /** Stops every running VM (app exit): ACPI first, forced after the timeout. */
  async stopAll(timeoutMs = 10_000): Promise<void> {
    await Promise.all(
      [...this.vms.all()].map(([id]) => this.shutdown(id, timeoutMs).catch(() => this.forceOff(id).catch(() => undefined))),
    );
  }

  // ───────────── disks (disk-changes.ts) ─────────────

  attachDisk(vmId: string, input: DiskInput): Promise<VmInfo> {
    return this.locked(vmId, () => this.disks.attach(vmId, input));
  }

  detachDisk(vmId: string, diskId: string): Promise<VmInfo> {
    return this.locked(vmId, () => this.disks.detach(vmId, diskId));
  }

  setDisk(vmId: string, diskId: string, patch: DiskPatch): Promise<VmInfo> {
    return this.locked(vmId, () => this.disks.set(vmId, diskId, patch));
  }

  /** Grows a disk, live or offline; shrinking is refused with a sentence. */
  resizeDisk(vmId: string, diskId: string, sizeBytes: number): Promise<VmInfo> {
    return this.locked(vmId, () => this.disks.resize(vmId, diskId, sizeBytes));
  }
}
