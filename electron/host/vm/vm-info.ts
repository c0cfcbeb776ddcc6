// What the API shows of a VM: its config with the running VM's state, pid, accelerator, disks,
// warnings and waits for space, or the last crash of a VM that is not running.
import type { VmInfo } from '../../shared/api.js';
import type { VmConfig } from '../../shared/model.js';
import type { LockOwner } from './lock-file.js';
import type { RunningVm } from './running-vm.js';

export function vmInfo(
  config: VmConfig,
  run: RunningVm | undefined,
  crash: VmInfo['crash'] | undefined,
  elsewhere: LockOwner | null,
): VmInfo {
  const warnings = run ? [...run.warnings] : [];
  const waiting = run ? run.disks.spaceWaits() : [];
  for (const d of config.disks)
    if (d.cache === 'unsafe')
      warnings.push(`Disk ${d.id} (${d.path}) uses cache 'unsafe': guest flushes are ignored and data can be lost if the host crashes.`);
  return {
    config,
    state: run ? run.state : crash ? 'crashed' : 'stopped',
    ...(run?.proc?.pid ? { pid: run.proc.pid } : {}),
    ...(run?.accelerator ? { accelerator: run.accelerator } : {}),
    warnings,
    disks: config.disks.map((d) => {
      const slot = run?.disks.get(d.id);
      const size = slot?.host?.sizeBytes;
      const modes = slot?.host?.modes;
      return {
        id: d.id,
        state: slot?.state ?? 'stopped',
        ...(slot?.message ? { message: slot.message } : {}),
        ...(size !== undefined ? { sizeBytes: size } : {}),
        ...(modes ? { modes } : {}),
        ...(slot?.switches?.length ? { switches: slot.switches } : {}),
      };
    }),
    ...(crash ? { crash } : {}),
    ...(run?.pauseReason ? { pauseReason: run.pauseReason } : {}),
    ...(waiting.length ? { waitingForSpace: waiting } : {}),
    vnc: !!run && config.display === 'vnc' && run.state !== 'starting',
    ...(elsewhere ? { runningElsewhere: { pid: elsewhere.pid } } : {}),
    ...(run && run.media.size ? { media: [...run.media].map(([drive, path]) => ({ drive, path })) } : {}),
  };
}
