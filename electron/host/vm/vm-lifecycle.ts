// A VM started, paused, resumed, reset, shut down and forced off: the moves the manager makes on a
// running VM (vm-state.ts holds the table of allowed ones) and the crash a QEMU that died by itself
// leaves. Disks start before QEMU and stop after it (running-vm.ts), so the guest never sees a
// disk vanish under it. Every method runs under the VM's lock, taken by the manager; a shutdown's
// wait for the guest is the manager's too, outside the lock, so a force-off can still come in.
import { SpindleError } from '../../shared/errors.js';
import type { VmConfig } from '../../shared/model.js';
import { refuseBaseWrites } from './clone.js';
import type { DiskHostFactory } from './disk-host.js';
import { DiskSlots, type VmEvents } from './disk-slots.js';
import { findQemu } from './launcher.js';
import { vmRuntimeDir } from './paths.js';
import { RunningVm } from './running-vm.js';
import type { VmContext } from './vm-context.js';

export interface LifecycleOptions {
  diskHostFactory?: DiskHostFactory;
  qemuBinary?: string;
  kvmPath?: string;
}

export class VmLifecycle {
  constructor(
    private readonly ctx: VmContext,
    private readonly opts: LifecycleOptions,
  ) {}

  /** `allowBaseWrites`: start even though a disk is a linked clone's base (clone.ts refuseBaseWrites). */
  async start(id: string, allowBaseWrites: boolean): Promise<void> {
    const { vms, configs, env } = this.ctx;
    const config = vms.config(id);
    if (vms.has(id)) throw new SpindleError('CONFLICT', `VM '${config.name}' is already running.`);
    if (!allowBaseWrites) refuseBaseWrites(config, this.ctx.store.loadAll().vms);
    const binary = findQemu(this.opts.qemuBinary, env);
    configs.checkStartable(config, (path) => vms.usedByOther(path, id));
    const run = this.newRun(config);
    // Before anything touches the VM's sockets: another process running it keeps them.
    run.lock = this.ctx.runLocks.claim(config);
    vms.add(id, run);
    for (const d of config.disks) run.leaseDisk(this.ctx.leases, d);
    vms.clearCrash(id);
    this.ctx.events.changed(id);
    try {
      const firmware = config.firmware === 'uefi' ? configs.firmwareFor(config) : undefined;
      await run.launch({
        binary,
        env,
        ...(this.opts.kvmPath ? { kvmPath: this.opts.kvmPath } : {}),
        ...(firmware ? { firmware } : {}),
        ...(config.tpm ? { tpmStateDir: configs.tpmStateDir(id) } : {}),
      });
    } catch (err) {
      if (!run.exited) {
        run.stopRequested = true;
        run.proc?.kill('SIGKILL');
      }
      if (run.spawned) await run.done;
      else await Promise.all([run.disks.closeAll(), run.stopAux()]);
      // A QEMU that died by itself while starting is recorded as a crash (onExited keeps its stderr).
      vms.forget(id, run);
      run.releaseLeases();
      run.lock?.release();
      this.ctx.events.changed(id);
      throw err;
    }
  }

  private newRun(config: VmConfig): RunningVm {
    const id = config.id;
    const { vms, events: out } = this.ctx;
    const events: VmEvents = {
      changed: () => out.changed(id),
      log: (level, message, diskId) => out.log(id, level, message, diskId),
      serial: (data) => out.serial(id, data),
    };
    const run = new RunningVm(config, vmRuntimeDir(id, this.ctx.env), events, (r) => new DiskSlots(r, events, this.opts.diskHostFactory));
    run.onExited = (code, signal) => {
      const clean = run.stopRequested || (run.guestShutdown && code === 0);
      if (!clean) {
        const tail = run.lastStderr();
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        vms.recordCrash(id, {
          at: new Date().toISOString(),
          exitCode: code,
          signal,
          stderrTail: tail,
          message: `QEMU ${how}${tail.length ? `: ${tail[tail.length - 1]}` : '.'}`,
        });
      }
      run.transition(clean ? 'stopped' : 'crashed');
      vms.forget(id, run);
      run.releaseLeases();
    };
    return run;
  }

  async pause(id: string): Promise<void> {
    const run = this.ctx.vms.live(id, 'be paused');
    run.pausedForSpace = false; // the user's pause now: free space does not end it
    run.pauseReason = null;
    await run.qmp.execute('stop');
    if (run.state === 'running') run.transition('paused');
    this.ctx.events.changed(id);
  }

  /** Refused while a disk's parked writes still do not fit (enospc 'stop', disk-slots.ts). */
  async resume(id: string): Promise<void> {
    const run = this.ctx.vms.live(id, 'be resumed');
    await run.spaceStep(async () => {
      const why = await run.disks.retryParkedForResume();
      if (why) {
        this.ctx.events.changed(id);
        throw new SpindleError(
          'CONFLICT',
          `VM '${run.config.name}' stays paused: ${why}. Free space there; the VM resumes by itself once the writes fit.`,
        );
      }
      run.pausedForSpace = false;
      run.pauseReason = null;
      await run.qmp.execute('cont');
      if (run.state === 'paused') run.transition('running');
      this.ctx.events.changed(id);
    });
  }

  async reset(id: string): Promise<void> {
    const run = this.ctx.vms.live(id, 'be reset');
    await run.qmp.execute('system_reset');
  }

  /** The ACPI power button; returns the run, whose `done` settles once QEMU has exited. */
  async pressPowerButton(id: string): Promise<RunningVm> {
    const run = this.ctx.vms.live(id, 'shut down');
    run.stopRequested = true;
    run.transition('shutting-down');
    this.ctx.events.changed(id);
    try {
      await run.qmp.execute('cont'); // a paused guest cannot see the power button
      await run.qmp.execute('system_powerdown');
    } catch {
      /* QEMU is already going away */
    }
    return run;
  }

  /** Pulls the plug: QEMU is told to quit (SIGKILL if it does not), then the disks are closed. */
  async forceOff(id: string): Promise<void> {
    const { vms } = this.ctx;
    const run = vms.get(id);
    if (!run || run.exited) {
      if (vms.elsewhere(id)) throw vms.notRunning(id, 'be forced off');
      throw new SpindleError('CONFLICT', `VM '${vms.config(id).name}' is not running.`);
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
  }
}
