// The VM manager: the one face the API and the CLI see. Configs go through the config service
// (config-service.ts), each running VM is a RunningVm (running-vm.ts: QEMU, QMP, serial, state)
// with its DiskSlots (disk-slots.ts), and every lifecycle call on one VM runs under that VM's
// lock (vm-lock.ts), one after the other. Disks start before QEMU and stop after it, so the guest
// never sees a disk vanish under it; a QEMU that dies shows 'crashed' with its last words.
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { type DiskInput, type DiskPatch, type VmInfo, type ConfigProblem } from '../../shared/api.js';
import { type VmConfig, vmNameKey } from '../../shared/model.js';
import type { ParsedParams } from '../../shared/api.js';
import { CACHE_SEMANTICS } from '../../shared/modes.js';
import { describeLimits } from '../../shared/limits.js';
import { SpindleError } from '../../shared/errors.js';
import { VmStore } from './store.js';
import type { QmpClient } from './qmp.js';
import { findQemu } from './launcher.js';
import type { DiskHost, DiskHostFactory } from './disk-host.js';
import { vmRuntimeDir } from './paths.js';
import type { LockOwner } from './lock-file.js';
import { RunLocks } from './run-lock.js';
import { VmConfigService, hostDeviceRefusal } from './config-service.js';
import { RunningVm, sleep } from './running-vm.js';
import { DiskSlots, noteSwitch, type VmEvents } from './disk-slots.js';
import { VmLocks } from './vm-lock.js';
import { vmInfo } from './vm-info.js';
import { changeMedia, mediaConfig } from './media.js';
import { DiskLeases, measuredByBench } from '../disks/disk-leases.js';
import { resizeImage } from '../images/resize-image.js';
import { formatSize } from '../../shared/size.js';
import { OfflineOps, type SnapshotOp } from './offline-ops.js';
import { refuseBaseWrites } from './clone.js';
import { withDisksReleased, type LiveVmDisks } from './live-disks.js';
import { nvramPath, planDiskRemoval, removeFiles } from './vm-files.js';

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

type Crash = NonNullable<VmInfo['crash']>;
type LiveVm = RunningVm & { qmp: QmpClient };

/**
 * Events: 'vm' ({type:'changed', vm} | {type:'deleted', id}), 'disk' (DiskEvent),
 * 'serial' ({vmId, data: Buffer}).
 */
export class VmManager extends EventEmitter {
  private readonly running = new Map<string, RunningVm>();
  private readonly crashes = new Map<string, Crash>();
  private readonly locks = new VmLocks();
  private readonly store: VmStore;
  private readonly configs: VmConfigService;
  private readonly runLocks: RunLocks;
  private readonly env: NodeJS.ProcessEnv;
  private readonly offline: OfflineOps;
  /** Which disk paths running VMs (and the aio comparison) use; the comparison asks here too. */
  readonly leases: DiskLeases;

  constructor(private readonly opts: VmManagerOptions) {
    super();
    this.leases = opts.leases ?? new DiskLeases();
    this.store = opts.store;
    this.configs = new VmConfigService(opts.store, {
      ...(opts.deviceRefusal ? { deviceRefusal: opts.deviceRefusal } : {}),
      ...(opts.nvramDir ? { nvramDir: opts.nvramDir } : {}),
    });
    this.runLocks = new RunLocks(opts.store);
    this.env = opts.env ?? process.env;
    this.offline = new OfflineOps(opts.store, this.runLocks, this.env, opts.nvramDir);
  }

  // ───────────── queries ─────────────

  list(): { vms: VmInfo[]; problems: ConfigProblem[] } {
    const { vms, problems } = this.store.loadAll();
    return { vms: vms.map((c) => this.info(c)), problems };
  }

  get(id: string): VmInfo {
    return this.info(this.config(id));
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

  private config(id: string): VmConfig {
    return this.running.get(id)?.config ?? this.configs.stored(id);
  }

  private info(config: VmConfig): VmInfo {
    const run = this.running.get(config.id);
    return vmInfo(config, run, run ? undefined : this.crashes.get(config.id), this.runningElsewhere(config.id));
  }

  /** Which other process runs VM `id` (run-lock.ts), or null. */
  private runningElsewhere(id: string): LockOwner | null {
    return this.running.has(id) ? null : this.runLocks.owner(id);
  }

  /** Refuses a change to a VM that another Spindle process runs (its copy of the config would win). */
  private refuseIfElsewhere(config: VmConfig, what: string): void {
    const owner = this.runningElsewhere(config.id);
    if (owner) throw RunLocks.elsewhere(config, owner, what);
  }

  private notRunning(id: string, what: string): SpindleError {
    const config = this.config(id);
    const owner = this.runningElsewhere(id);
    return owner
      ? RunLocks.elsewhere(config, owner, what)
      : new SpindleError('CONFLICT', `VM '${config.name}' is not running, so it cannot ${what}.`);
  }

  private changed(id: string): void {
    try {
      this.emit('vm', { type: 'changed', vm: this.get(id) });
    } catch {
      /* deleted meanwhile */
    }
  }

  private log(vmId: string, level: 'info' | 'warning' | 'error', message: string, diskId = ''): void {
    this.emit('disk', { vmId, diskId, level, message, t: Date.now() });
  }

  /** Running VMs' disk servers, for the stats sampler. */
  *diskHosts(): Generator<{ vmId: string; diskId: string; host: DiskHost }> {
    for (const [vmId, run] of this.running)
      for (const slot of run.disks.all()) if (slot.host) yield { vmId, diskId: slot.config.id, host: slot.host };
  }

  /** Running QEMU processes, for the stats sampler. */
  *qemuProcesses(): Generator<{ vmId: string; pid: number }> {
    for (const [vmId, run] of this.running) if (run.proc?.pid && !run.exited) yield { vmId, pid: run.proc.pid };
  }

  vncSocketPath(vmId: string): string | null {
    const run = this.running.get(vmId);
    if (!run || run.config.display !== 'vnc' || run.state === 'starting') return null;
    return join(run.dir, 'vnc.sock');
  }

  serialBacklog(vmId: string): Buffer {
    this.config(vmId);
    const run = this.running.get(vmId);
    return run ? Buffer.concat(run.serialBacklog) : Buffer.alloc(0);
  }

  serialInput(vmId: string, data: Buffer): void {
    const run = this.running.get(vmId);
    if (!run?.serial || run.serial.destroyed)
      throw new SpindleError('CONFLICT', `VM '${this.config(vmId).name}' is not running, so its console takes no input.`);
    run.serial.write(data);
  }

  // ───────────── config changes ─────────────

  async create(input: ParsedParams<'vm.create'>): Promise<VmInfo> {
    const config = this.configs.create(input);
    this.changed(config.id);
    return this.get(config.id);
  }

  update(id: string, patch: ParsedParams<'vm.update'>['patch']): Promise<VmInfo> {
    return this.locks.run(id, async () => {
      const config = this.config(id);
      const run = this.running.get(id);
      if (!run) this.refuseIfElsewhere(config, 'be changed');
      const next = this.configs.update(config, patch, !!run);
      if (run) run.config = next;
      this.changed(id);
      return this.get(id);
    });
  }

  /** `deleteDisks`: also the images Spindle made for it and its UEFI variables (vm-files.ts says which). */
  delete(
    id: string,
    opts: { deleteDisks?: boolean } = {},
  ): Promise<{ deletedFiles: string[]; keptFiles: { path: string; reason: string }[] }> {
    return this.locks.run(id, async () => {
      const config = this.config(id);
      if (this.running.has(id)) throw new SpindleError('CONFLICT', `VM '${config.name}' is running; shut it down before deleting it.`);
      const vars = nvramPath(this.store.dir, id, this.opts.nvramDir);
      const plan = opts.deleteDisks
        ? planDiskRemoval(config, this.store.loadAll().vms, this.env, existsSync(vars) ? vars : undefined)
        : null;
      this.configs.delete(config, () => this.refuseIfElsewhere(config, 'be deleted'));
      this.crashes.delete(id);
      this.emit('vm', { type: 'deleted', id });
      return plan
        ? removeFiles(plan)
        : { deletedFiles: [], keptFiles: config.disks.map((d) => ({ path: d.path, reason: 'kept as asked.' })) };
    });
  }

  /** A new VM from a stopped one: full copies of its disks, or qcow2 overlays on them (`linked`). */
  clone(id: string, name: string, linked: boolean): Promise<VmInfo> {
    return this.locks.run(id, async () => {
      const source = this.config(id);
      if (this.running.has(id))
        throw new SpindleError(
          'CONFLICT',
          `VM '${source.name}' is running; shut it down to clone it (a copy of disks being written is not consistent).`,
        );
      const newId = await this.offline.clone(source, name, linked);
      this.changed(newId);
      return this.get(newId);
    });
  }

  /** Runs `fn` with every disk of running VM `id` closed by its server, the guest's I/O held (live-disks.ts). */
  withDisksReleased<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(id, () =>
      withDisksReleased(
        this.liveDisks(id),
        this.config(id).disks.map((d) => d.id),
        fn,
      ),
    );
  }

  private liveDisks(id: string): LiveVmDisks {
    const live = this.runningOrThrow(id, 'release its disks');
    return { state: live.state, name: live.config.name, host: (diskId) => live.disks.get(diskId)?.host ?? undefined };
  }

  snapshots(id: string): ReturnType<OfflineOps['list']> {
    return this.offline.list(this.config(id));
  }

  snapshot(id: string, op: SnapshotOp, name: string): ReturnType<OfflineOps['list']> {
    return this.locks.run(id, async () => {
      if (!this.running.has(id)) this.refuseIfElsewhere(this.config(id), 'change its snapshots');
      await this.offline.snapshot(this.config(id), op, name, this.running.has(id) ? this.liveDisks(id) : undefined);
      this.changed(id);
      return this.offline.list(this.config(id));
    });
  }

  /** Which running VM (other than `vmId`), or which other part of Spindle, uses `path`, as a refusal sentence. */
  private usedByOtherVm(path: string, vmId: string | undefined): string | undefined {
    const holder = this.leases.holder(path);
    if (holder?.kind === 'vm' && holder.vmId !== vmId) return `${path} is in use by the running VM '${holder.vmName()}'.`;
    if (holder?.kind === 'bench') return measuredByBench(path);
    return undefined;
  }

  // ───────────── lifecycle ─────────────

  /** `allowBaseWrites`: start even though a disk is a linked clone's base (clone.ts refuseBaseWrites). */
  start(id: string, opts: { allowBaseWrites?: boolean } = {}): Promise<VmInfo> {
    return this.locks.run(id, async () => {
      const config = this.config(id);
      if (this.running.has(id)) throw new SpindleError('CONFLICT', `VM '${config.name}' is already running.`);
      if (!opts.allowBaseWrites) refuseBaseWrites(config, this.store.loadAll().vms);
      const binary = findQemu(this.opts.qemuBinary, this.env);
      this.configs.checkStartable(config, (path) => this.usedByOtherVm(path, id));
      const run = this.newRun(config);
      // Before anything touches the VM's sockets: another process running it keeps them.
      run.lock = this.runLocks.claim(config);
      this.running.set(id, run);
      for (const d of config.disks) run.leaseDisk(this.leases, d);
      this.crashes.delete(id);
      this.changed(id);
      try {
        const firmware = config.firmware === 'uefi' ? this.configs.firmwareFor(config) : undefined;
        await run.launch({
          binary,
          env: this.env,
          ...(this.opts.kvmPath ? { kvmPath: this.opts.kvmPath } : {}),
          ...(firmware ? { firmware } : {}),
          ...(config.tpm ? { tpmStateDir: this.configs.tpmStateDir(id) } : {}),
        });
      } catch (err) {
        if (!run.exited) {
          run.stopRequested = true;
          run.proc?.kill('SIGKILL');
        }
        if (run.spawned) await run.done;
        else await Promise.all([run.disks.closeAll(), run.stopAux()]);
        // A QEMU that died by itself while starting is recorded as a crash (onExited keeps its stderr).
        if (this.running.get(id) === run) this.running.delete(id);
        run.releaseLeases();
        run.lock?.release();
        this.changed(id);
        throw err;
      }
      return this.get(id);
    });
  }

  private newRun(config: VmConfig): RunningVm {
    const id = config.id;
    const events: VmEvents = {
      changed: () => this.changed(id),
      log: (level, message, diskId) => this.log(id, level, message, diskId),
      serial: (data) => this.emit('serial', { vmId: id, data }),
    };
    const run = new RunningVm(config, vmRuntimeDir(id, this.env), events, (r) => new DiskSlots(r, events, this.opts.diskHostFactory));
    run.onExited = (code, signal) => {
      const clean = run.stopRequested || (run.guestShutdown && code === 0);
      if (!clean) {
        const tail = run.lastStderr();
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        this.crashes.set(id, {
          at: new Date().toISOString(),
          exitCode: code,
          signal,
          stderrTail: tail,
          message: `QEMU ${how}${tail.length ? `: ${tail[tail.length - 1]}` : '.'}`,
        });
      }
      run.transition(clean ? 'stopped' : 'crashed');
      if (this.running.get(id) === run) this.running.delete(id);
      run.releaseLeases();
    };
    return run;
  }

  private runningOrThrow(id: string, what: string): LiveVm {
    const run = this.running.get(id);
    if (!run || !run.qmp || run.exited) throw this.notRunning(id, what);
    if (run.state === 'starting') throw new SpindleError('CONFLICT', `VM '${run.config.name}' is still starting; try again in a moment.`);
    return run as LiveVm;
  }

  pause(id: string): Promise<VmInfo> {
    return this.locks.run(id, async () => {
      const run = this.runningOrThrow(id, 'be paused');
      run.pausedForSpace = false; // the user's pause now: free space does not end it
      run.pauseReason = null;
      await run.qmp.execute('stop');
      if (run.state === 'running') run.transition('paused');
      this.changed(id);
      return this.get(id);
    });
  }

  resume(id: string): Promise<VmInfo> {
    return this.locks.run(id, async () => {
      const run = this.runningOrThrow(id, 'be resumed');
      await run.spaceStep(async () => {
        const why = await run.disks.retryParkedForResume();
        if (why) {
          this.changed(id);
          throw new SpindleError(
            'CONFLICT',
            `VM '${run.config.name}' stays paused: ${why}. Free space there; the VM resumes by itself once the writes fit.`,
          );
        }
        run.pausedForSpace = false;
        run.pauseReason = null;
        await run.qmp.execute('cont');
        if (run.state === 'paused') run.transition('running');
        this.changed(id);
      });
      return this.get(id);
    });
  }

  reset(id: string): Promise<VmInfo> {
    return this.locks.run(id, async () => {
      const run = this.runningOrThrow(id, 'be reset');
      await run.qmp.execute('system_reset');
      return this.get(id);
    });
  }

  /** Inserts or ejects a CD-ROM (media.ts); a running VM's drive changes at once. */
  media(id: string, drive: string, path: string | null): Promise<VmInfo> {
    return this.locks.run(id, async () => {
      const config = this.config(id);
      const run = this.running.get(id);
      if (!run) this.refuseIfElsewhere(config, 'change its CD-ROMs');
      const next = mediaConfig(config, drive, path, !!run, (p) => this.configs.checkMedia([p]));
      if (run) await changeMedia(this.runningOrThrow(id, 'change its CD-ROMs'), drive, path);
      if (next !== config) {
        this.configs.save(next);
        if (run) run.config = next;
      }
      this.changed(id);
      return this.get(id);
    });
  }

  /**
   * ACPI power button; forced off when the guest has not powered off within the timeout. The
   * request runs under the VM's lock; the wait for the guest does not hold it, so a force-off
   * may still pull the plug meanwhile.
   */
  async shutdown(id: string, timeoutMs = this.opts.shutdownTimeoutMs ?? 30_000): Promise<VmInfo> {
    const run = await this.locks.run(id, async () => {
      const run = this.runningOrThrow(id, 'shut down');
      run.stopRequested = true;
      run.transition('shutting-down');
      this.changed(id);
      try {
        await run.qmp.execute('cont'); // a paused guest cannot see the power button
        await run.qmp.execute('system_powerdown');
      } catch {
        /* QEMU is already going away */
      }
      return run;
    });
    const timedOut = await Promise.race([run.done.then(() => false), sleep(timeoutMs).then(() => true)]);
    if (timedOut && !run.exited) {
      this.log(id, 'warning', `VM '${run.config.name}' did not power off within ${Math.round(timeoutMs / 1000)} s; forcing it off.`);
      await this.forceOff(id);
    }
    await run.done;
    return this.get(id);
  }

  /** Pulls the plug: QEMU is told to quit (SIGKILL if it does not), then the disks are closed. */
  forceOff(id: string): Promise<VmInfo> {
    return this.locks.run(id, async () => {
      const run = this.running.get(id);
      if (!run || run.exited) {
        if (this.runningElsewhere(id)) throw this.notRunning(id, 'be forced off');
        throw new SpindleError('CONFLICT', `VM '${this.config(id).name}' is not running.`);
      }
      run.stopRequested = true;
      const killTimer = setTimeout(() => run.proc?.kill('SIGKILL'), 5000);
      if (run.qmp?.isOpen) {
        run.qmp.execute('quit').catch(() => run.proc?.kill('SIGKILL'));
      } else {
        run.proc?.kill('SIGKILL');
      }
      await run.done;
      clearTimeout(killTimer);
      return this.get(id);
    });
  }

  /** Stops every running VM (app exit): ACPI first, forced after the timeout. */
  async stopAll(timeoutMs = 10_000): Promise<void> {
    await Promise.all(
      [...this.running.keys()].map((id) => this.shutdown(id, timeoutMs).catch(() => this.forceOff(id).catch(() => undefined))),
    );
  }

  // ───────────── disks ─────────────

  attachDisk(vmId: string, input: DiskInput): Promise<VmInfo> {
    return this.locks.run(vmId, async () => {
      const config = this.config(vmId);
      const run = this.running.get(vmId);
      if (!run) this.refuseIfElsewhere(config, 'take a new disk');
      const disk = this.configs.prepareDisk(
        input,
        run ? [...config.disks, ...run.disks.all().map((s) => s.config)] : config.disks,
        this.usedByOtherVm(input.path, vmId),
      );
      if (run) {
        const live = this.runningOrThrow(vmId, 'take a new disk');
        await live.disks.hotplug(live.qmp, live.proc!.pid!, disk);
      }
      const next = { ...config, disks: [...config.disks, disk] };
      this.configs.save(next);
      if (run) {
        run.config = next;
        run.leaseDisk(this.leases, disk);
      }
      this.changed(vmId);
      return this.get(vmId);
    });
  }

  detachDisk(vmId: string, diskId: string): Promise<VmInfo> {
    return this.locks.run(vmId, async () => {
      const config = this.config(vmId);
      const disk = config.disks.find((d) => d.id === diskId);
      if (!disk) throw new SpindleError('NOT_FOUND', `VM '${config.name}' has no disk ${diskId}.`);
      const run = this.running.get(vmId);
      if (!run) this.refuseIfElsewhere(config, 'release a disk');
      if (run) {
        const live = this.runningOrThrow(vmId, 'release a disk');
        if (live.state === 'paused')
          throw new SpindleError('CONFLICT', `VM '${config.name}' is paused; resume it so the guest can release disk ${diskId}.`);
        await live.disks.unplug(live.qmp, diskId);
        live.releaseLeases(diskId);
      }
      const next = { ...config, disks: config.disks.filter((d) => d.id !== diskId) };
      this.configs.save(next);
      if (run) run.config = next;
      this.changed(vmId);
      return this.get(vmId);
    });
  }

  setDisk(vmId: string, diskId: string, patch: DiskPatch): Promise<VmInfo> {
    return this.locks.run(vmId, async () => {
      const config = this.config(vmId);
      const disk = config.disks.find((d) => d.id === diskId);
      if (!disk) throw new SpindleError('NOT_FOUND', `VM '${config.name}' has no disk ${diskId}.`);
      const next = this.configs.patchDisk(disk, patch);
      const run = this.running.get(vmId);
      if (!run) this.refuseIfElsewhere(config, 'change its disks');
      if (run) {
        if (next.readOnly !== disk.readOnly || next.queues !== disk.queues || (next.enospc ?? 'stop') !== (disk.enospc ?? 'stop')) {
          throw new SpindleError(
            'CONFLICT',
            `VM '${config.name}' is running: read-only, queue count and the full-disk policy of disk ${diskId} change only while it is stopped (aio and cache modes change live).`,
          );
        }
        const host = run.disks.get(diskId)?.host;
        if (!host) throw new SpindleError('CONFLICT', `Disk ${diskId} of '${config.name}' is not being served right now.`);
        if (next.aio !== disk.aio || next.cache !== disk.cache || next.nowait !== disk.nowait) {
          await host.reconfigure({ aio: next.aio, cache: next.cache, nowait: next.nowait });
          noteSwitch(run.disks.get(diskId)!, disk, next);
          this.log(
            vmId,
            'info',
            `Disk ${diskId} now uses aio '${next.aio}' and cache '${next.cache}' (${CACHE_SEMANTICS[next.cache].summary}).`,
            diskId,
          );
        }
        if (patch.limits !== undefined && describeLimits(patch.limits) !== describeLimits(disk.limits)) {
          if (!host.setLimits)
            throw new SpindleError('CONFLICT', `Disk ${diskId} of '${config.name}' cannot change its limits while running.`);
          await host.setLimits(patch.limits);
          this.log(vmId, 'info', `Disk ${diskId} I/O limits: ${describeLimits(patch.limits)}.`, diskId);
        }
      }
      const nextConfig = { ...config, disks: config.disks.map((d) => (d.id === diskId ? next : d)) };
      this.configs.save(nextConfig);
      if (run) {
        run.config = nextConfig;
        const slot = run.disks.get(diskId);
        if (slot) slot.config = next;
      }
      this.changed(vmId);
      return this.get(vmId);
    });
  }

  /** Grows a disk: live through its disk server (the guest is told), or the image itself while the
   *  VM is stopped. Shrinking is refused with a sentence. */
  resizeDisk(vmId: string, diskId: string, sizeBytes: number): Promise<VmInfo> {
    return this.locks.run(vmId, async () => {
      const config = this.config(vmId);
      const disk = config.disks.find((d) => d.id === diskId);
      if (!disk) throw new SpindleError('NOT_FOUND', `VM '${config.name}' has no disk ${diskId}.`);
      if (disk.readOnly) throw new SpindleError('READ_ONLY', `Disk ${diskId} of '${config.name}' is read-only; it cannot be resized.`);
      const run = this.running.get(vmId);
      if (!run) this.refuseIfElsewhere(config, 'resize its disks');
      if (run) {
        const host = run.disks.get(diskId)?.host;
        if (!host?.resize) throw new SpindleError('CONFLICT', `Disk ${diskId} of '${config.name}' is not being served right now.`);
        await host.resize(sizeBytes);
      } else {
        const other = this.usedByOtherVm(disk.path, vmId);
        if (other) throw new SpindleError('DEVICE_BUSY', other);
        await resizeImage(disk.path, disk.format ?? 'raw', sizeBytes);
        this.log(vmId, 'info', `Disk ${diskId} (${disk.path}) grew to ${formatSize(sizeBytes)}.`, diskId);
      }
      this.changed(vmId);
      return this.get(vmId);
    });
  }
}
