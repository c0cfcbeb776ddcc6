// Opens an image file or host block device with the flags of a cache mode (docs/ARCHITECTURE.md, "Cache modes and aio modes") and turns
// every refusal into a SpindleError with a sentence a user understands. Images in a format other
// than raw (qcow2, vmdk, ...) are refused. The image locks are taken by the caller (image-lock.ts).
import { closeSync, constants, openSync, statSync, type Stats } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { geometry } from '../native/os.js';
import { noteFdClosed, noteFdOpened } from '../native/posix.js';
import { CACHE_SEMANTICS, modeConflict, type AioMode, type CacheMode } from '../../shared/modes.js';
import { blockName, blockSizesOf, majMin, mountPointOf, queueDiscardMaxBytes } from './sysfs.js';
import { refuseNonRawFd } from './format-detect.js';
import { imageUsage } from './image-lock.js';
import { permissionDenied } from './permission.js';

export interface OpenedDisk {
  fd: number;
  path: string;
  kind: 'file' | 'block';
  sizeBytes: number;
  logicalBlockSize: number;
  physicalBlockSize: number;
  /** Files punch holes; a device must say it can discard. */
  supportsDiscard: boolean;
  direct: boolean;
  dsync: boolean;
  readOnly: boolean;
  close(): void;
}

export interface OpenOptions {
  cache: CacheMode;
  readOnly?: boolean;
  /** Checked against the cache mode before anything is opened. */
  aio?: AioMode;
  /** The disk's format, known to the caller (a VM's config, `export --format`): the file is then
   *  never probed (a raw image whose guest wrote a qcow2 header stays raw, QEMU's CVE-2008-2004).
   *  Absent: images that look like another format are refused. */
  format?: 'raw' | 'qcow2';
}

/** The open(2) flags of a cache mode. Block devices get O_EXCL: the kernel then refuses a device that is mounted or held. */
export function openFlags(cache: CacheMode, kind: 'file' | 'block', readOnly: boolean): number {
  const sem = CACHE_SEMANTICS[cache];
  let flags = readOnly ? constants.O_RDONLY : constants.O_RDWR; // libuv adds O_CLOEXEC itself
  if (sem.direct) flags |= constants.O_DIRECT;
  if (sem.dsync) flags |= constants.O_DSYNC;
  if (kind === 'block') flags |= constants.O_EXCL;
  return flags;
}

function refusal(err: unknown, path: string, st: Stats | null, cache: CacheMode, readOnly: boolean): SpindleError {
  const errno = errnoOf(err);
  switch (errno) {
    case 'ENOENT':
      return new SpindleError('NOT_FOUND', `${path} does not exist.`, errno, { cause: err });
    case 'EISDIR':
      return new SpindleError('IS_DIRECTORY', `${path} is a directory, not a disk image or block device.`, errno, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return permissionDenied(path, err, !readOnly, st);
    case 'EBUSY': {
      const where = st ? mountPointOf(st.rdev) : null;
      if (where)
        return new SpindleError(
          'DEVICE_MOUNTED',
          `${path} is mounted at ${where}; unmount it before giving it to a virtual machine.`,
          errno,
          { cause: err },
        );
      const holders = lockedBy(path);
      return holders
        ? new SpindleError('DEVICE_BUSY', holders, errno, { cause: err })
        : new SpindleError(
            'DEVICE_BUSY',
            `${path} is in use by something else (a mounted partition, a device-mapper/LVM/RAID holder, or another program that opened it exclusively).`,
            errno,
            { cause: err },
          );
    }
    case 'EINVAL':
      if (CACHE_SEMANTICS[cache].direct) {
        return new SpindleError(
          'UNSUPPORTED_MODE',
          `The filesystem holding ${path} does not support direct I/O (O_DIRECT), which cache '${cache}' needs. Use cache 'writeback' with aio 'threads' or 'io_uring' for this file, or move it to a filesystem such as ext4 or xfs.`,
          errno,
          { cause: err },
        );
      }
      return new SpindleError('IO_ERROR', `${path} cannot be opened: ${(err as Error).message}`, errno, { cause: err });
    case 'EROFS':
      return new SpindleError('READ_ONLY', `${path} is on a read-only filesystem or device; open it read-only.`, errno, { cause: err });
    default:
      return ioError(err, `open ${path}`);
  }
}

/** Who holds QEMU's image locks on `path`, as sentences, or null (an O_EXCL open names nobody). */
function lockedBy(path: string): string | null {
  try {
    const usage = imageUsage(path);
    return usage.writers.length || usage.readers.length ? usage.reasons.join(' ') : null;
  } catch {
    return null;
  }
}

/** Maps an I/O errno (from an open, or a request's -errno result) to a SpindleError. */
export function ioError(err: unknown, what: string): SpindleError {
  const errno = typeof err === 'number' ? errnoName(err) : errnoOf(err);
  if (errno === 'ENOSPC') return new SpindleError('NO_SPACE', `${what}: no space left on the device holding the disk.`, errno);
  if (errno === 'EIO')
    return new SpindleError('IO_ERROR', `${what}: the host reported an I/O error (EIO); the disk or its storage may be failing.`, errno);
  if (errno === 'EROFS') return new SpindleError('READ_ONLY', `${what}: the disk is read-only.`, errno);
  const msg = typeof err === 'number' ? (errno ?? String(err)) : ((err as Error)?.message ?? String(err));
  return new SpindleError('IO_ERROR', `${what} failed: ${msg}.`, errno, typeof err === 'number' ? undefined : { cause: err });
}

const ERRNO_NAMES: Record<number, string> = Object.fromEntries(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));
/** 'ENOSPC' for -28 or 28. */
export function errnoName(n: number): string | undefined {
  return ERRNO_NAMES[Math.abs(n)];
}

export function openDisk(path: string, options: OpenOptions): OpenedDisk {
  const { cache } = options;
  const readOnly = options.readOnly ?? false;
  if (options.aio) {
    const conflict = modeConflict(options.aio, cache);
    if (conflict) throw new SpindleError('UNSUPPORTED_MODE', conflict);
  }
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw refusal(err, path, null, cache, readOnly);
  }
  if (st.isDirectory()) throw new SpindleError('IS_DIRECTORY', `${path} is a directory, not a disk image or block device.`, 'EISDIR');
  const kind = st.isBlockDevice() ? 'block' : st.isFile() ? 'file' : null;
  if (!kind) throw new SpindleError('NOT_A_DISK', `${path} is neither a regular file nor a block device.`);
  let fd: number;
  try {
    fd = openSync(path, openFlags(cache, kind, readOnly));
  } catch (err) {
    throw refusal(err, path, st, cache, readOnly);
  }
  noteFdOpened(fd);
  const closeFd = (): void => {
    noteFdClosed(fd);
    closeSync(fd);
  };
  try {
    if (!options.format) refuseNonRawFd(path, fd); // through this fd: with O_DIRECT the header stays out of the page cache
    const g = geometry(fd);
    let { logicalBlockSize, physicalBlockSize } = g;
    if (g.kind === 'file') {
      // Unknown device (tmpfs, overlay): 4096 is a safe alignment for every common device.
      const sizes = blockSizesOf(st.dev) ?? { logical: 4096, physical: 4096 };
      logicalBlockSize = sizes.logical;
      physicalBlockSize = sizes.physical;
    }
    if (g.sizeBytes % 512 !== 0 && options.format !== 'qcow2') {
      throw new SpindleError(
        'SIZE_NOT_ALIGNED',
        `${path} is ${g.sizeBytes} bytes, not a multiple of 512: a disk is made of 512-byte sectors. Resize it (truncate -s) to a multiple of 512.`,
      );
    }
    const sem = CACHE_SEMANTICS[cache];
    const devName = kind === 'block' ? blockName(majMin(st.rdev)) : null;
    let closed = false;
    return {
      fd,
      path,
      kind,
      sizeBytes: g.sizeBytes,
      logicalBlockSize,
      physicalBlockSize,
      supportsDiscard: kind === 'file' || (devName !== null && queueDiscardMaxBytes(devName) > 0),
      direct: sem.direct,
      dsync: sem.dsync,
      readOnly,
      close() {
        if (closed) return;
        closed = true;
        closeFd();
      },
    };
  } catch (err) {
    closeFd();
    throw err;
  }
}
