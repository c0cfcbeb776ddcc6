// Import: another hypervisor's disk (vmdk, vdi, vhdx, vhd, qcow2) or a raw image converted into a
// new raw or qcow2 image by QEMU's own `qemu-img convert`, with the source's format given from its
// header (qemu-img never probes) and progress reported. The destination is made by this module
// with O_EXCL first, so an existing file is never overwritten; on any failure it is removed.
import { closeSync, constants, openSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import type { DiskFormat } from '../../shared/model.js';
import { FORMAT_NAMES, detectFormat, type ImageFormat } from '../../dataplane/block/format-detect.js';
import { runQemuImg } from './qemu-img.js';

/** What can be imported, as qemu-img names the format. */
export const IMPORTABLE: readonly (ImageFormat | 'raw')[] = ['raw', 'qcow2', 'vmdk', 'vdi', 'vhdx', 'vpc'];

export interface ImportedImage {
  source: string;
  sourceFormat: ImageFormat | 'raw';
  path: string;
  format: DiskFormat;
}

/** The source's format, or a sentence saying why it cannot be imported. */
export function importableFormat(source: string): ImageFormat | 'raw' {
  let st;
  try {
    st = statSync(source);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') throw new SpindleError('NOT_FOUND', `${source} does not exist.`, 'ENOENT');
    throw new SpindleError('PERMISSION_DENIED', `${source} cannot be read: ${(err as Error).message}.`, errnoOf(err));
  }
  if (st.isDirectory()) throw new SpindleError('IS_DIRECTORY', `${source} is a directory; give the image file.`, 'EISDIR');
  if (!st.isFile() && !st.isBlockDevice()) throw new SpindleError('NOT_A_DISK', `${source} is not an image file or a block device.`);
  const found = detectFormat(source) ?? 'raw';
  if (found !== 'raw' && !IMPORTABLE.includes(found))
    throw new SpindleError(
      'UNSUPPORTED_FORMAT',
      found === 'luks'
        ? `${source} is a LUKS-encrypted volume: open it on the host (cryptsetup open) and import /dev/mapper/NAME instead.`
        : `${source} is a ${FORMAT_NAMES[found]} image; Spindle imports raw, qcow2, vmdk, vdi, vhdx and vhd images.`,
    );
  return found;
}

/** Converts `source` into a new image at `dest`; `onProgress` gets percentages (0..100). */
export async function importImage(
  source: string,
  dest: string,
  format: DiskFormat,
  onProgress?: (percent: number) => void,
  signal?: AbortSignal,
): Promise<ImportedImage> {
  const sourceFormat = importableFormat(source);
  let fd: number;
  try {
    fd = openSync(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'EEXIST')
      throw new SpindleError(
        'CONFLICT',
        `${dest} already exists: Spindle will not overwrite it; choose another name or remove it first.`,
        code,
      );
    if (code === 'ENOENT')
      throw new SpindleError('NOT_FOUND', `Cannot create ${dest}: the directory ${dirname(dest)} does not exist.`, code);
    if (code === 'EACCES' || code === 'EPERM')
      throw new SpindleError('PERMISSION_DENIED', `Permission denied creating ${dest}: you cannot write to ${dirname(dest)}.`, code);
    throw new SpindleError('IO_ERROR', `Cannot create ${dest}: ${(err as Error).message}.`, code, { cause: err });
  }
  closeSync(fd);
  try {
    onProgress?.(0);
    await runQemuImg(
      ['convert', '-p', '-f', sourceFormat, '-O', format, source, dest],
      `Importing ${source} (${sourceFormat}) as ${dest} (${format})`,
      { ...(onProgress ? { onProgress } : {}), ...(signal ? { signal } : {}) },
    );
    onProgress?.(100);
  } catch (err) {
    try {
      unlinkSync(dest);
    } catch {
      /* gone */
    }
    throw err;
  }
  return { source, sourceFormat, path: dest, format };
}
