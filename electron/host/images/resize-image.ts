// Growing a disk that no VM serves right now: a raw file with ftruncate under QEMU's write lock, a
// host block device checked against its own new size, a qcow2 through `qemu-img resize` (QEMU's
// code, which takes QEMU's locks itself). A served disk grows through its IOThread instead
// (BlockDevice.resize). Shrinking is refused with a sentence either way.
import { closeSync, constants, ftruncateSync, openSync, statSync } from 'node:fs';
import { SpindleError } from '../../shared/errors.js';
import type { DiskFormat } from '../../shared/model.js';
import { checkNewSize } from '../../dataplane/block/backend.js';
import { ImageLock } from '../../dataplane/block/image-lock.js';
import { ioError } from '../../dataplane/block/open.js';
import { geometry } from '../../dataplane/native/os.js';
import { formatSize } from '../../shared/size.js';
import { qemuImgChain, runQemuImg } from './qemu-img.js';

/** The size a guest sees of `path` stored as `format`. */
export async function virtualSize(path: string, format: DiskFormat): Promise<number> {
  if (format === 'qcow2') return (await qemuImgChain(path, 'qcow2'))[0]!['virtual-size'];
  const fd = openSync(path, constants.O_RDONLY);
  try {
    return geometry(fd).sizeBytes;
  } finally {
    closeSync(fd);
  }
}

/** Grows the image at `path` (not served by anyone) to `sizeBytes`. */
export async function resizeImage(path: string, format: DiskFormat, sizeBytes: number): Promise<void> {
  const current = await virtualSize(path, format);
  checkNewSize(path, current, sizeBytes);
  if (sizeBytes === current) return;
  if (format === 'qcow2') {
    await runQemuImg(['resize', '-f', 'qcow2', path, String(sizeBytes)], `Growing ${path} to ${formatSize(sizeBytes)}`);
    return;
  }
  if (statSync(path).isBlockDevice()) {
    throw new SpindleError(
      'INVALID_ARGUMENT',
      `${path} is a block device of ${formatSize(current)} (${current} bytes); grow the device itself (lvextend, a larger partition) and its new size is what the VM sees.`,
    );
  }
  // QEMU's write lock: no QEMU, qemu-img or other Spindle writes the file while it grows.
  const lock = ImageLock.acquire(path, { write: true });
  try {
    const fd = openSync(path, constants.O_WRONLY);
    try {
      ftruncateSync(fd, sizeBytes);
    } catch (err) {
      throw ioError(err, `growing ${path} to ${sizeBytes} bytes`);
    } finally {
      closeSync(fd);
    }
  } finally {
    lock.release();
  }
}
