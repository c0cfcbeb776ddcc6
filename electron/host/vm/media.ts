// CD-ROM media: which drive holds which ISO, in the config and in a running QEMU (QMP
// blockdev-change-medium and eject, on the ide-cd device by its id; QEMU docs: qapi/block.json).
import { SpindleError } from '../../shared/errors.js';
import type { VmConfig } from '../../shared/model.js';
import type { QmpClient } from './qmp.js';
import { MAX_CDROMS } from './machine-argv.js';

/**
 * The config after putting `path` (null: nothing) in `drive`. cd0 is the boot ISO: a new ISO there
 * becomes the boot ISO; ejecting it is refused on a stopped VM (change the boot source instead)
 * and lasts until the VM stops on a running one. cd1… are the extra drives; a running VM has the
 * drives it started with.
 */
export function mediaConfig(
  config: VmConfig,
  drive: string,
  path: string | null,
  running: boolean,
  checkIso: (path: string) => void,
): VmConfig {
  const n = Number(drive.slice(2));
  if (!/^cd[0-9]$/.test(drive) || n >= MAX_CDROMS)
    throw new SpindleError('INVALID_ARGUMENT', `There is no CD-ROM drive '${drive}' (cd0-cd${MAX_CDROMS - 1}).`);
  if (path) checkIso(path);
  if (n === 0) {
    if (config.boot.kind !== 'iso')
      throw new SpindleError(
        'CONFLICT',
        `VM '${config.name}' does not boot from an ISO, so it has no drive cd0; use cd1 (an extra drive) or change the boot source.`,
      );
    if (path === null) {
      if (running) return config; // ejected until the VM stops; the boot ISO stays its setting
      throw new SpindleError('CONFLICT', `cd0 holds the boot ISO of '${config.name}'; change the boot source to stop booting from it.`);
    }
    return { ...config, boot: { kind: 'iso', path } };
  }
  const cdroms = [...(config.cdroms ?? [])];
  if (n > cdroms.length + (running ? 0 : 1))
    throw new SpindleError(
      'CONFLICT',
      running
        ? `VM '${config.name}' has no drive ${drive} while it runs; add drives while it is stopped.`
        : `Add CD-ROM drives in order: the next one for '${config.name}' is cd${cdroms.length + 1}.`,
    );
  cdroms[n - 1] = path;
  return { ...config, cdroms };
}

/** Changes the medium in a running VM's drive: opens the tray (forced: the guest may have locked it) and closes it on the new ISO. */
export async function changeMedia(
  run: { qmp: QmpClient; media: Map<string, string | null> },
  drive: string,
  path: string | null,
): Promise<void> {
  if (path === null) {
    await run.qmp.execute('eject', { id: drive, force: true });
  } else {
    await run.qmp.execute('blockdev-change-medium', { id: drive, filename: path, format: 'raw', 'read-only-mode': 'read-only' });
  }
  run.media.set(drive, path);
}
