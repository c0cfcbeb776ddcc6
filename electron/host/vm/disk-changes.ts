// A VM's disks added, removed, changed and grown: in its config, and on a running VM live too
// (hot-plug and unplug over QMP in disk-slots.ts, a mode switch or new I/O limits on the disk's
// server, a resize the guest is told about). Every method runs under the VM's lock, taken by the
// manager.
import type { DiskInput, DiskPatch } from '../../shared/api.js';
import { SpindleError } from '../../shared/errors.js';
import { describeLimits } from '../../shared/limits.js';
import type { DiskConfig, VmConfig } from '../../shared/model.js';
import { CACHE_SEMANTICS } from '../../shared/modes.js';
import { formatSize } from '../../shared/size.js';
import { resizeImage } from '../images/resize-image.js';
import { noteSwitch } from './disk-slots.js';
import type { VmContext } from './vm-context.js';

export class DiskChanges {
  constructor(private readonly ctx: VmContext) {}

  /** Stopped VM: added to its config. Running VM: hot-plugged first. */
  async attach(vmId: string, input: DiskInput): Promise<void> {
    const { vms, configs } = this.ctx;
    const config = vms.config(vmId);
    const run = vms.get(vmId);
    if (!run) vms.refuseIfElsewhere(config, 'take a new disk');
    const disk = configs.prepareDisk(
      input,
      run ? [...config.disks, ...run.disks.all().map((s) => s.config)] : config.disks,
      vms.usedByOther(input.path, vmId),
    );
    if (run) {
      const live = vms.live(vmId, 'take a new disk');
      await live.disks.hotplug(live.qmp, live.proc!.pid!, disk);
    }
    const next = { ...config, disks: [...config.disks, disk] };
    configs.save(next);
    if (run) {
      run.config = next;
      run.leaseDisk(this.ctx.leases, disk);
    }
    this.ctx.events.changed(vmId);
  }

  /** Running VM: the guest releases the disk (device_del) before its server stops. */
  async detach(vmId: string, diskId: string): Promise<void> {
    const { vms } = this.ctx;
    const config = vms.config(vmId);
    diskOf(config, diskId);
    const run = vms.get(vmId);
    if (!run) vms.refuseIfElsewhere(config, 'release a disk');
    if (run) {
      const live = vms.live(vmId, 'release a disk');
      if (live.state === 'paused')
        throw new SpindleError('CONFLICT', `VM '${config.name}' is paused; resume it so the guest can release disk ${diskId}.`);
      await live.disks.unplug(live.qmp, diskId);
      live.releaseLeases(diskId);
    }
    const next = { ...config, disks: config.disks.filter((d) => d.id !== diskId) };
    this.ctx.configs.save(next);
    if (run) run.config = next;
    this.ctx.events.changed(vmId);
  }

  /** aio, cache, nowait and I/O limits change live; read-only, queues and enospc only on a stopped VM. */
  async set(vmId: string, diskId: string, patch: DiskPatch): Promise<void> {
    const { vms, configs, events } = this.ctx;
    const config = vms.config(vmId);
    const disk = diskOf(config, diskId);
    const next = configs.patchDisk(disk, patch);
    const run = vms.get(vmId);
    if (!run) vms.refuseIfElsewhere(config, 'change its disks');
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
        events.log(
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
        events.log(vmId, 'info', `Disk ${diskId} I/O limits: ${describeLimits(patch.limits)}.`, diskId);
      }
    }
    const nextConfig = { ...config, disks: config.disks.map((d) => (d.id === diskId ? next : d)) };
    configs.save(nextConfig);
    if (run) {
      run.config = nextConfig;
      const slot = run.disks.get(diskId);
      if (slot) slot.config = next;
    }
    events.changed(vmId);
  }

  /** Grows a disk: live through its disk server (the guest is told), or the image itself while the
   *  VM is stopped. Shrinking is refused with a sentence. */
  async resize(vmId: string, diskId: string, sizeBytes: number): Promise<void> {
    const { vms } = this.ctx;
    const config = vms.config(vmId);
    const disk = diskOf(config, diskId);
    if (disk.readOnly) throw new SpindleError('READ_ONLY', `Disk ${diskId} of '${config.name}' is read-only; it cannot be resized.`);
    const run = vms.get(vmId);
    if (!run) vms.refuseIfElsewhere(config, 'resize its disks');
    if (run) {
      const host = run.disks.get(diskId)?.host;
      if (!host?.resize) throw new SpindleError('CONFLICT', `Disk ${diskId} of '${config.name}' is not being served right now.`);
      await host.resize(sizeBytes);
    } else {
      const other = vms.usedByOther(disk.path, vmId);
      if (other) throw new SpindleError('DEVICE_BUSY', other);
      await resizeImage(disk.path, disk.format ?? 'raw', sizeBytes);
      this.ctx.events.log(vmId, 'info', `Disk ${diskId} (${disk.path}) grew to ${formatSize(sizeBytes)}.`, diskId);
    }
    this.ctx.events.changed(vmId);
  }
}

function diskOf(config: VmConfig, diskId: string): DiskConfig {
  const disk = config.disks.find((d) => d.id === diskId);
  if (!disk) throw new SpindleError('NOT_FOUND', `VM '${config.name}' has no disk ${diskId}.`);
  return disk;
}
