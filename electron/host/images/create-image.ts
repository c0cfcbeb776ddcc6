// Image creation. Raw: sparse (ftruncate) or preallocated (fallocate, or zeros where the filesystem
// has no fallocate, or zeros when asked). qcow2: `qemu-img create` (QEMU's own code) on a file this
// module made with O_EXCL first, so nothing is ever overwritten, even in a race. Preallocation of
// an existing image fills its holes in place.
import { closeSync, constants, fstatSync, ftruncateSync, fsyncSync, openSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DiskFormat } from '../../shared/model.js';
import { FORMAT_NAMES, detectFormat } from '../../dataplane/block/format-detect.js';
import { qemuImgChain, runQemuImg } from './qemu-img.js';
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
export function createImage(
  path: string,
  sizeBytes: number,
  opts: { preallocate?: boolean; zeros?: boolean; mode?: number } = {},
): CreatedImage {
  checkImageSize(sizeBytes);
  const fd = createExclusive(path, opts.mode ?? 0o644);
  let method: CreatedImage['method'] = 'sparse';
  try {
    if (opts.preallocate) {
      try {
        if (opts.zeros) throw Object.assign(new Error('zeros asked for'), { code: 'EOPNOTSUPP' });
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
    removeQuietly(path);
    throw creationError(err, path, sizeBytes);
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* gone */
  }
}

function creationError(err: unknown, path: string, sizeBytes: number): SpindleError {
  if (err instanceof SpindleError) return err;
  const code = errnoOf(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new SpindleError(
      'NO_SPACE',
      `Not enough space to preallocate ${formatSize(sizeBytes)} for ${path}; the partial file was removed.`,
      code,
      { cause: err },
    );
  }
  if (code === 'EFBIG')
    return new SpindleError(
      'NO_SPACE',
      `${formatSize(sizeBytes)} is larger than the filesystem allows for one file; ${path} was removed.`,
      code,
      { cause: err },
    );
  return new SpindleError('IO_ERROR', `Creating ${path} failed (${(err as Error).message}); the partial file was removed.`, code, {
    cause: err,
  });
}

/** A new, empty file at `path` (O_EXCL: never one that exists), with sentences for every refusal. */
function createExclusive(path: string, mode: number): number {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
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
  return fd;
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

export const PREALLOCATIONS = ['off', 'metadata', 'falloc', 'full'] as const;
export type Preallocation = (typeof PREALLOCATIONS)[number];

export interface ImageSpec {
  path: string;
  format: DiskFormat;
  /** Required unless `backing` is given (then the backing image's size by default). */
  sizeBytes?: number;
  /** qcow2 only: a power of two from 512 bytes to 2 MiB (qemu-img's default 64 KiB). */
  clusterSize?: number;
  preallocate?: Preallocation;
  /** qcow2 only: the image this one starts as a copy-on-write overlay of (raw or qcow2, absolute). */
  backing?: string;
}

export interface CreatedDiskImage {
  path: string;
  format: DiskFormat;
  sizeBytes: number;
  preallocate: Preallocation;
  clusterSize?: number;
  backing?: { path: string; format: DiskFormat };
}

/** Every mistake in `spec` as one sentence (INVALID_ARGUMENT), before anything is created. */
export function checkImageSpec(spec: ImageSpec): { backingFormat?: DiskFormat } {
  const bad = (m: string): never => {
    throw new SpindleError('INVALID_ARGUMENT', m);
  };
  const pre = spec.preallocate ?? 'off';
  if (!(PREALLOCATIONS as readonly string[]).includes(pre))
    bad(
      `Preallocation '${pre}' is not one of ${PREALLOCATIONS.join(', ')} (off: sparse; metadata: qcow2 tables only; falloc: reserve the space; full: write zeros).`,
    );
  if (spec.format === 'raw') {
    if (spec.clusterSize !== undefined) bad('A cluster size is a qcow2 setting; a raw image has no clusters (use --format qcow2).');
    if (spec.backing !== undefined) bad('A backing file needs a qcow2 image (a raw image cannot be an overlay): use --format qcow2.');
    if (pre === 'metadata') bad("Preallocation 'metadata' is for qcow2 (its tables); for a raw image use off, falloc or full.");
  }
  if (spec.clusterSize !== undefined) {
    const c = spec.clusterSize;
    if (!Number.isSafeInteger(c) || c < 512 || c > 2 * 1024 * 1024 || (c & (c - 1)) !== 0)
      bad(`A qcow2 cluster size is a power of two from 512 bytes to 2 MiB (like 64K, the default), not ${c} bytes.`);
  }
  if (spec.sizeBytes === undefined) {
    if (spec.backing === undefined) bad('The image needs a size (for example --size 10G).');
  } else {
    try {
      checkImageSize(spec.sizeBytes);
    } catch (err) {
      bad((err as Error).message);
    }
  }
  if (spec.backing === undefined) return {};
  let st;
  try {
    st = statSync(spec.backing);
  } catch {
    return bad(`The backing file ${spec.backing} does not exist.`);
  }
  if (!st.isFile() && !st.isBlockDevice()) bad(`The backing file ${spec.backing} is not an image file or a block device.`);
  const found = detectFormat(spec.backing);
  if (found && found !== 'qcow2')
    bad(
      `The backing file ${spec.backing} is a ${FORMAT_NAMES[found]} image; a backing file must be raw or qcow2 (convert it with spindle import).`,
    );
  return { backingFormat: found === 'qcow2' ? 'qcow2' : 'raw' };
}

/** Creates a raw or qcow2 image as `spec` says; never overwrites. */
export async function createDiskImage(spec: ImageSpec): Promise<CreatedDiskImage> {
  const { backingFormat } = checkImageSpec(spec);
  const pre = spec.preallocate ?? 'off';
  if (spec.format === 'raw') {
    const made = createImage(spec.path, spec.sizeBytes!, { preallocate: pre !== 'off', zeros: pre === 'full' });
    return { path: made.path, format: 'raw', sizeBytes: made.sizeBytes, preallocate: pre };
  }
  // Ours first (O_EXCL), then qemu-img writes the qcow2 into it: an existing file is never touched.
  closeSync(createExclusive(spec.path, 0o644));
  const opts = [
    ...(spec.clusterSize !== undefined ? [`cluster_size=${spec.clusterSize}`] : []),
    ...(pre !== 'off' ? [`preallocation=${pre}`] : []),
  ];
  const args = [
    'create',
    '-q',
    '-f',
    'qcow2',
    ...(opts.length ? ['-o', opts.join(',')] : []),
    ...(spec.backing ? ['-b', spec.backing, '-F', backingFormat!] : []),
    spec.path,
    ...(spec.sizeBytes !== undefined ? [String(spec.sizeBytes)] : []),
  ];
  try {
    await runQemuImg(args, `Creating the qcow2 image ${spec.path}`);
  } catch (err) {
    removeQuietly(spec.path);
    throw err;
  }
  const info = (await qemuImgChain(spec.path, 'qcow2'))[0]!;
  return {
    path: spec.path,
    format: 'qcow2',
    sizeBytes: info['virtual-size'],
    preallocate: pre,
    ...(info['cluster-size'] ? { clusterSize: info['cluster-size'] } : {}),
    ...(spec.backing ? { backing: { path: spec.backing, format: backingFormat! } } : {}),
  };
}
