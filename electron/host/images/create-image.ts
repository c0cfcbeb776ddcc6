// Raw image creation: sparse (ftruncate) or preallocated (fallocate, or zeros where the filesystem
// has no fallocate). Never overwrites: an existing path is refused. Preallocation of an existing
// image fills its holes in place.
import { closeSync, constants, fstatSync, ftruncateSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { fallocate } from '../../dataplane/native/os.js';
import { formatSize } from '../../shared/size.js';
import { accessError, statDiskPath } from '../../dataplane/block/host-devices.js';

/** Throws SIZE_NOT_ALIGNED unless `sizeBytes` is a positive multiple of 512 (virtio-blk sectors). */
export function checkImageSize(sizeBytes: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
    throw new SpindleError('SIZE_NOT_ALIGNED', `An image size must be a positive whole number of bytes, not ${sizeBytes}.`);
  }
  if (sizeBytes % 512 !== 0) {
    const down = Math.floor(sizeBytes / 512) * 512;
    throw new SpindleError(
      'SIZE_NOT_ALIGNED',
      `${sizeBytes} bytes is not a multiple of 512 (a disk is made of 512-byte sectors): use ${down || 512} or ${down + 512}.`,
    );
  }
}

export interface CreatedImage {
  path: string;
  sizeBytes: number;
  preallocated: boolean;
  method: 'sparse' | 'fallocate' | 'zeros';
}

function writeZeros(fd: number, sizeBytes: number): void {
  const chunk = Buffer.alloc(1 << 20);
  for (let off = 0; off < sizeBytes;) {
    off += writeSync(fd, chunk, 0, Math.min(chunk.length, sizeBytes - off), off);
  }
}

/**
 * Creates a raw image of `sizeBytes`, with permissions `mode` (before the umask; 0644 as qemu-img
 * does). Removes a partial file on any failure (ENOSPC included).
 */
export function createImage(path: string, sizeBytes: number, opts: { preallocate?: boolean; mode?: number } = {}): CreatedImage {
  checkImageSize(sizeBytes);
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, opts.mode ?? 0o644);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'EEXIST')
      throw new SpindleError(
        'CONFLICT',
        `${path} already exists: Spindle will not overwrite it; choose another name or remove it first.`,
        code,
      );
    if (code === 'ENOENT')
      throw new SpindleError('NOT_FOUND', `Cannot create ${path}: the directory ${dirname(path)} does not exist.`, code);
    if (code === 'EISDIR') throw new SpindleError('IS_DIRECTORY', `${path} is a directory: give a file name for the image.`, code);
    if (code === 'EACCES' || code === 'EPERM')
      throw new SpindleError('PERMISSION_DENIED', `Permission denied creating ${path}: you cannot write to ${dirname(path)}.`, code);
    if (code === 'EROFS') throw new SpindleError('PERMISSION_DENIED', `Cannot create ${path}: the filesystem is read-only.`, code);
    throw new SpindleError('IO_ERROR', `Cannot create ${path}: ${(err as Error).message}.`, code, { cause: err });
  }
  let method: CreatedImage['method'] = 'sparse';
  try {
    if (opts.preallocate) {
      try {
        fallocate(fd, 'allocate', 0, sizeBytes);
        method = 'fallocate';
      } catch (err) {
        if (errnoOf(err) !== 'EOPNOTSUPP') throw err;
        writeZeros(fd, sizeBytes);
        method = 'zeros';
      }
      fsyncSync(fd);
    } else {
      ftruncateSync(fd, sizeBytes);
    }
    closeSync(fd);
    return { path, sizeBytes, preallocated: method !== 'sparse', method };
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      /* closed */
    }
    try {
      unlinkSync(path);
    } catch {
      /* gone */
    }
    const code = errnoOf(err);
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      throw new SpindleError(
        'NO_SPACE',
        `Not enough space to preallocate ${formatSize(sizeBytes)} for ${path}; the partial file was removed.`,
        code,
        { cause: err },
      );
    }
    if (code === 'EFBIG')
      throw new SpindleError(
        'NO_SPACE',
        `${formatSize(sizeBytes)} is larger than the filesystem allows for one file; ${path} was removed.`,
        code,
        { cause: err },
      );
    throw new SpindleError('IO_ERROR', `Creating ${path} failed (${(err as Error).message}); the partial file was removed.`, code, {
      cause: err,
    });
  }
}

export interface PreallocatedImage {
  path: string;
  sizeBytes: number;
  method: 'fallocate' | 'already';
}

/**
 * Allocates every hole of an existing image (fallocate over [0, size), which leaves written data
 * and the size as they are: holes become unwritten extents that read as zeros), so native AIO
 * never waits for block allocation on it. Host devices have nothing to allocate and are refused.
 */
export function preallocateImage(path: string): PreallocatedImage {
  const { kind } = statDiskPath(path);
  if (kind === 'block')
    throw new SpindleError('INVALID_ARGUMENT', `${path} is a host block device: it has no holes, so there is nothing to preallocate.`);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR);
  } catch (err) {
    throw accessError(path, err, true);
  }
  try {
    const sizeBytes = fstatSync(fd).size;
    if (sizeBytes === 0) return { path, sizeBytes, method: 'already' };
    try {
      fallocate(fd, 'allocate', 0, sizeBytes);
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'EOPNOTSUPP') {
        throw new SpindleError(
          'UNSUPPORTED_MODE',
          `The filesystem holding ${path} cannot preallocate (no fallocate): make a fully allocated copy instead (cp --sparse=never).`,
          code,
          { cause: err },
        );
      }
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw new SpindleError(
          'NO_SPACE',
          `Not enough space to preallocate ${formatSize(sizeBytes)} for ${path}; its data is unchanged.`,
          code,
          { cause: err },
        );
      }
      throw new SpindleError('IO_ERROR', `Preallocating ${path} failed (${(err as Error).message}); its data is unchanged.`, code, {
        cause: err,
      });
    }
    fsyncSync(fd);
    return { path, sizeBytes, method: 'fallocate' };
  } finally {
    closeSync(fd);
  }
}
