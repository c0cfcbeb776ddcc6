// A running VM's disks: one slot per disk with its server, its state and what its parked writes
// wait for; serving a disk, hot-plug and unplug over QMP, and enospc 'stop' (the VM paused while
// a disk's filesystem is full, resumed once the parked writes are written).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DiskRuntime, SpaceWait } from '../../shared/api.js';
import type { DiskConfig } from '../../shared/model.js';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { chardevIdOf, diskSocketName } from './launcher.js';
import { spareRootPorts } from './machine-argv.js';
import type { DiskHost, DiskHostEvent, DiskHostFactory, DiskServeSpec } from './disk-host.js';
import { servedDiskFactory } from './served-disk.js';
import { describeDiskEvent, describeSpaceWait, effectOf, spaceWaitOf } from './disk-events.js';
import type { QmpClient } from './qmp.js';
import type { RunningVm } from './running-vm.js';

const DEVICE_DELETE_TIMEOUT_MS = 60_000;

/** What a running VM tells its owner (the manager turns these into its 'vm', 'disk', 'serial' events). */
export interface VmEvents {
  changed(): void;
  log(level: 'info' | 'warning' | 'error', message: string, diskId?: string): void;
  serial(data: Buffer): void;
}

export interface DiskSlot {
  config: DiskConfig;
  host: DiskHost | null;
  state: DiskRuntime['state'];
  message?: string;
  /** What its parked writes wait for (enospc 'stop'), while they wait. */
  space?: Omit<SpaceWait, 'diskId' | 'path'>;
  /** Its live mode switches while this VM runs (vm-info.ts shows them), oldest first. */
  switches?: NonNullable<DiskRuntime['switches']>;
}

export class DiskSlots {
  private readonly slots = new Map<string, DiskSlot>();
  /** q35: the spare root port each hot-plugged disk sits on (machine-argv.ts). */
  private readonly hotplugPorts = new Map<string, string>();

  constructor(
    private readonly run: RunningVm,
    private readonly events: VmEvents,
    private readonly factory: DiskHostFactory = servedDiskFactory,
  ) {}

  get(diskId: string): DiskSlot | undefined {
    return this.slots.get(diskId);
  }

  all(): DiskSlot[] {
    return [...this.slots.values()];
  }

  /** What parked writes wait for, per disk. */
  spaceWaits(): SpaceWait[] {
    return this.all().flatMap((s) => (s.space ? [{ diskId: s.config.id, path: s.config.path, ...s.space }] : []));
  }

  /**
   * `peerPid`: the QEMU that may connect, when it is already running (hot-plug). At VM start the
   * disks must listen before QEMU exists (it connects while building its devices), so they start
   * with `awaitPeer` and serve nobody until expectPeer() names QEMU's pid.
   */
  async start(d: DiskConfig, socketPath: string, peer: { peerPid?: number; awaitPeer?: boolean }): Promise<DiskSlot> {
    rmSync(socketPath, { force: true });
    const slot: DiskSlot = { config: d, host: null, state: 'stopped' };
    this.slots.set(d.id, slot);
    const spec: DiskServeSpec = {
      path: d.path,
      socketPath,
      aio: d.aio,
      cache: d.cache,
      nowait: d.nowait,
      readOnly: d.readOnly,
      queues: d.queues,
      serial: d.serial,
      enospc: d.enospc ?? 'stop',
      format: d.format ?? 'raw',
      ...(d.limits ? { limits: d.limits } : {}),
      ...(peer.peerPid !== undefined ? { peerPid: peer.peerPid } : {}),
      ...(peer.awaitPeer ? { awaitPeer: true } : {}),
    };
    try {
      slot.host = await this.factory(spec);
    } catch (err) {
      this.slots.delete(d.id);
      if (err instanceof SpindleError)
        throw new SpindleError(err.code, `Disk ${d.id} (${d.path}) could not be served: ${err.message}`, err.errno);
      throw new SpindleError('IO_ERROR', `Disk ${d.id} (${d.path}) could not be served: ${(err as Error).message}.`, errnoOf(err));
    }
    slot.state = 'serving';
    slot.host.on('event', (e) => this.onDiskEvent(slot, e));
    return slot;
  }

  /** Names QEMU's pid to every disk started with awaitPeer. */
  async expectPeer(pid: number): Promise<void> {
    await Promise.all(this.all().map((slot) => slot.host?.expectPeer?.(pid)));
  }

  /** Drains and closes every disk server (in parallel: each is its own thread). */
  async closeAll(): Promise<void> {
    await Promise.all(
      this.all().map(async (slot) => {
        const host = slot.host;
        slot.host = null;
        slot.state = 'stopped';
        if (!host) return;
        try {
          await host.stop();
        } catch (err) {
          this.events.log('error', `Disk ${slot.config.id} did not close cleanly: ${(err as Error).message}`, slot.config.id);
        }
        rmSync(join(this.run.dir, diskSocketName(slot.config.id)), { force: true });
      }),
    );
  }

  /** Serves `disk` and plugs it into the running guest (chardev + vhost-user-blk-pci). */
  async hotplug(qmp: QmpClient, pid: number, disk: DiskConfig): Promise<void> {
    const socketPath = join(this.run.dir, diskSocketName(disk.id));
    const slot = await this.start(disk, socketPath, { peerPid: pid });
    let chardevAdded = false;
    try {
      await qmp.execute('chardev-add', {
        id: chardevIdOf(disk.id),
        backend: { type: 'socket', data: { addr: { type: 'unix', data: { path: socketPath } }, server: false, reconnect: 1 } },
      });
      chardevAdded = true;
      // q35 hot-plugs only behind a PCIe root port: the first spare one no other hot-plugged disk holds.
      let bus: string | undefined;
      if (this.run.config.machine === 'q35') {
        const used = new Set(this.hotplugPorts.values());
        bus = spareRootPorts().find((p) => !used.has(p));
        if (!bus)
          throw new SpindleError(
            'CONFLICT',
            `VM '${this.run.config.name}' has no free PCIe root port left; attach more disks while it is stopped.`,
          );
        this.hotplugPorts.set(disk.id, bus);
      }
      await qmp.execute('device_add', {
        driver: 'vhost-user-blk-pci',
        id: disk.id,
        chardev: chardevIdOf(disk.id),
        'num-queues': disk.queues,
        ...(bus ? { bus } : {}),
      });
    } catch (err) {
      this.hotplugPorts.delete(disk.id);
      if (chardevAdded) await qmp.execute('chardev-remove', { id: chardevIdOf(disk.id) }).catch(() => undefined);
      this.slots.delete(disk.id);
      await slot.host?.stop().catch(() => undefined);
      throw err;
    }
  }

  /** Asks the guest to release disk `diskId`; only once the device is gone does its server stop. */
  async unplug(qmp: QmpClient, diskId: string): Promise<void> {
    const name = this.run.config.name;
    const deleted = qmp.waitEvent('DEVICE_DELETED', (d) => d.device === diskId, DEVICE_DELETE_TIMEOUT_MS);
    deleted.catch(() => undefined);
    await qmp.execute('device_del', { id: diskId });
    try {
      await deleted;
    } catch {
      throw new SpindleError(
        'DEVICE_BUSY',
        `The guest in '${name}' did not release disk ${diskId} within ${DEVICE_DELETE_TIMEOUT_MS / 1000} s (it must support ACPI hot-unplug); the disk stays attached.`,
      );
    }
    await qmp.execute('chardev-remove', { id: chardevIdOf(diskId) }).catch(() => undefined);
    const slot = this.slots.get(diskId);
    this.slots.delete(diskId);
    this.hotplugPorts.delete(diskId);
    await slot?.host?.stop();
    rmSync(join(this.run.dir, diskSocketName(diskId)), { force: true });
  }

  /** The slot's state follows the event's meaning (effectOf); its sentence is made here, for the log only. */
  private onDiskEvent(slot: DiskSlot, e: DiskHostEvent): void {
    const effect = effectOf(e);
    const line = describeDiskEvent(e, slot.config.path);
    if (effect === 'broken') {
      slot.state = 'broken';
      if (line) slot.message = line.message;
    } else if (effect === 'no-space' && (slot.state === 'serving' || slot.state === 'no-space')) {
      slot.state = 'no-space';
      if (line) slot.message = line.message;
    }
    if ((e.kind === 'no-space' || e.kind === 'space-wait') && slot.state === 'no-space') {
      slot.space = { ...spaceWaitOf(e), since: slot.space?.since ?? new Date().toISOString() };
    }
    if (effect === 'space-freed') {
      if (slot.state === 'no-space') {
        slot.state = 'serving';
        delete slot.message;
      }
      delete slot.space;
    }
    if (line) this.events.log(line.level, line.message, slot.config.id);
    if (effect === 'no-space') void this.pauseForNoSpace();
    else if (effect === 'space-freed') void this.resumeAfterSpace();
    else if (effect) this.events.changed();
  }

  /**
   * enospc 'stop': a disk parked writes because its filesystem is full. The guest is paused (QMP
   * stop) so it piles up no more; the disk's IOThread retries the writes as space is freed, and
   * resumeAfterSpace() continues the guest once they are written. A VM the user paused stays theirs.
   */
  private pauseForNoSpace(): Promise<void> {
    const run = this.run;
    return run.spaceStep(async () => {
      if (run.live && (run.state === 'running' || run.state === 'starting')) {
        try {
          await run.qmp!.execute('stop');
          if (run.state === 'running') run.transition('paused');
          run.pausedForSpace = true;
        } catch (err) {
          this.events.log('error', `VM '${run.config.name}' could not be paused after a disk ran out of space: ${(err as Error).message}`);
        }
      }
      if (run.pausedForSpace) run.pauseReason = this.spaceReason();
      this.events.changed();
    });
  }

  private spaceReason(): string {
    const full = this.all()
      .filter((s) => s.state === 'no-space')
      .map((s) => s.config.path);
    const where = full.length ? full.join(' and ') : 'a disk';
    return `Spindle paused the VM because the filesystem holding ${where} is full. It resumes by itself once space is freed there and the waiting writes are written.`;
  }

  /** A disk's parked writes are all written: a VM Spindle paused for them goes on once no disk waits. */
  private resumeAfterSpace(): Promise<void> {
    const run = this.run;
    return run.spaceStep(async () => {
      if (this.all().some((s) => s.state === 'no-space')) {
        if (run.pausedForSpace) run.pauseReason = this.spaceReason();
        this.events.changed();
        return;
      }
      const ours = run.pausedForSpace;
      run.pausedForSpace = false;
      run.pauseReason = null;
      if (ours && run.state === 'paused' && run.live) {
        try {
          await run.qmp!.execute('cont');
          if (run.state === 'paused') run.transition('running');
          this.events.log('info', `VM '${run.config.name}' resumed: space was freed and the writes that waited for it are written.`);
        } catch (err) {
          this.events.log('error', `VM '${run.config.name}' could not be resumed after space was freed: ${(err as Error).message}`);
        }
      }
      this.events.changed();
    });
  }

  /**
   * A user's resume: writes parked for lack of space are retried first; while some still find no
   * space the VM stays paused (running it would only park more), and resumes by itself once they
   * fit. Returns the refusal, or null when the guest may continue.
   */
  async retryParkedForResume(): Promise<string | null> {
    const parked = this.all().filter((s) => s.state === 'no-space');
    const outcomes = await Promise.all(parked.map((slot) => slot.host?.retryParked?.() ?? Promise.resolve({ retried: 0, parked: 0 })));
    const still = parked.filter((slot, i) => outcomes[i]!.parked > 0 && slot.state === 'no-space');
    for (const slot of parked) {
      if (still.includes(slot)) continue;
      if (slot.state === 'no-space') slot.state = 'serving';
      delete slot.message;
      delete slot.space;
    }
    if (!still.length) return null;
    return still
      .map(
        (s) => `the filesystem holding ${s.config.path} is still full (${s.space ? describeSpaceWait(s.space) : 'writes wait for space'})`,
      )
      .join('; ');
  }
}

/** Kept on the disk's slot so a reloaded page still marks the switches on its charts. */
const SWITCH_KEEP_SEC = 10 * 60;
const SWITCH_KEEP_COUNT = 20;
export function noteSwitch(slot: DiskSlot, from: DiskConfig, to: DiskConfig): void {
  const t = Date.now() / 1000;
  const modes = (d: DiskConfig) => ({ aio: d.aio, cache: d.cache, nowait: d.nowait });
  slot.switches = [...(slot.switches ?? []).filter((x) => x.t > t - SWITCH_KEEP_SEC), { t, from: modes(from), to: modes(to) }].slice(
    -SWITCH_KEEP_COUNT,
  );
}
