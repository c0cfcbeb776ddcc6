// One writer per image, with QEMU's own image locks, so QEMU, qemu-io, qemu-storage-daemon and
// Spindle refuse each other while one of them writes. QEMU's file-posix driver (block/file-posix.c,
// raw_apply_lock_bytes and raw_check_lock_bytes) takes shared OFD read locks on single bytes:
// byte 100+n while it holds permission bit n, byte 200+n while it does not share bit n; before
// using an image it tests, with F_OFD_GETLK for a write lock, byte 200+n for each permission it
// wants and byte 100+n for each permission it does not share. Bits (include/block/block-common.h):
// CONSISTENT_READ 0x1, WRITE 0x2, WRITE_UNCHANGED 0x4, RESIZE 0x8.
//
// The locks live on a descriptor of their own that stays open for the disk's lifetime, apart from
// the I/O descriptors: OFD locks belong to an open file description, and two descriptions of one
// process conflict like two processes do, so a live mode switch (which reopens the I/O fd) must
// not take them again. OFD locks are shared by all threads, so the disk's IOThread may hold them.
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { ofdLock, ofdTest } from '../native/os.js';
import { noteFdClosed, noteFdOpened } from '../native/posix.js';
import { accessError } from './host-devices.js';
import { lockHolders, loopDevicesBacking, type LockHolder, type LoopUse } from './image-users.js';

export const LOCK_PERM_BASE = 100;
export const LOCK_SHARED_BASE = 200;
export const PERM_CONSISTENT_READ = 0x1;
export const PERM_WRITE = 0x2;
export const PERM_WRITE_UNCHANGED = 0x4;
export const PERM_RESIZE = 0x8;
const PERM_BITS = 4;
const WRITE_BYTE = LOCK_PERM_BASE + 1;
const NO_OTHER_WRITER_BYTE = LOCK_SHARED_BASE + 1;

/**
 * What Spindle asks for: exactly what QEMU's virtio-blk device takes with share-rw=off (read,
 * plus write unless read-only; shares reading, unchanged writes and resizing but not writing).
 */
export function lockPermissions(write: boolean): { perm: number; shared: number } {
  return { perm: PERM_CONSISTENT_READ | (write ? PERM_WRITE : 0), shared: PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED | PERM_RESIZE };
}

/** The bytes a holder of (perm, shared) locks. */
export function lockBytes(perm: number, shared: number): number[] {
  const bytes: number[] = [];
  for (let i = 0; i < PERM_BITS; i++) if (perm & (1 << i)) bytes.push(LOCK_PERM_BASE + i);
  for (let i = 0; i < PERM_BITS; i++) if (!(shared & (1 << i))) bytes.push(LOCK_SHARED_BASE + i);
  return bytes;
}

/** The bytes whose lock by another holder forbids (perm, shared). */
export function conflictBytes(perm: number, shared: number): number[] {
  const bytes: number[] = [];
  for (let i = 0; i < PERM_BITS; i++) if (perm & (1 << i)) bytes.push(LOCK_SHARED_BASE + i);
  for (let i = 0; i < PERM_BITS; i++) if (!(shared & (1 << i))) bytes.push(LOCK_PERM_BASE + i);
  return bytes;
}

const holds = (h: LockHolder, byte: number): boolean => h.locks.some((l) => l.start <= byte && l.end >= byte);
const isConflict = (err: unknown): boolean => errnoOf(err) === 'EAGAIN' || errnoOf(err) === 'EACCES';

function list(items: string[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}

/** The holders of any of `bytes` (our own locks already dropped); empty when none can be named. */
function holdersOf(path: string, bytes: number[]): LockHolder[] {
  try {
    return lockHolders(path, Math.min(...bytes), Math.max(...bytes)).holders.filter((h) => bytes.some((b) => holds(h, b)));
  } catch {
    return []; // the path vanished: say what we know
  }
}

/** "qemu-io (pid 12) has", "a and b have", "another program has". */
function subject(holders: LockHolder[], singular: string, plural: string): string {
  return holders.length
    ? `${list(holders.map((h) => h.description))} ${holders.length > 1 ? plural : singular}`
    : `another program ${singular}`;
}

/** The refusal when `byte` is held by someone else, naming who and what they do. */
function conflictError(path: string, write: boolean, byte: number): SpindleError {
  const holders = holdersOf(path, [byte, WRITE_BYTE, NO_OTHER_WRITER_BYTE]);
  const writers = holders.filter((h) => holds(h, WRITE_BYTE));
  const exclusive = holders.filter((h) => holds(h, NO_OTHER_WRITER_BYTE));
  let sentence: string;
  if (writers.length || (!holders.length && byte === WRITE_BYTE)) {
    sentence = write
      ? `${path} is in use: ${subject(writers, 'has', 'have')} it open for writing. Spindle takes QEMU's image locks and serves an image to one writer at a time: stop that program first.`
      : `${path} is in use: ${subject(writers, 'has', 'have')} it open for writing, so a read-only disk would see its data change underneath. Stop that program first.`;
  } else if (write && (exclusive.length || byte === NO_OTHER_WRITER_BYTE)) {
    sentence = `${path} is in use: ${subject(exclusive, 'has', 'have')} it open and allow${exclusive.length > 1 ? '' : 's'} no writer meanwhile (QEMU's image locks). Stop that program first, or open this disk read-only too.`;
  } else {
    sentence = `${path} is in use: ${subject(holders, 'holds', 'hold')} a lock on it (QEMU image lock byte ${byte}). Stop that program first.`;
  }
  return new SpindleError('DEVICE_BUSY', sentence, 'EAGAIN');
}

/** Refuses writing a file that a mounted (or stacked-on) loop device reads from. */
function refuseLoopBacked(path: string): void {
  for (const loop of loopDevicesBacking(path)) {
    if (loop.mountpoints.length) {
      throw new SpindleError(
        'DEVICE_MOUNTED',
        `${path} is the backing file of ${loop.device}, which is mounted at ${list(loop.mountpoints)}: a guest writing the file would corrupt that filesystem under the host. Unmount it and detach the loop device (losetup -d ${loop.device}) first, or open the image read-only.`,
      );
    }
    if (loop.holders.length) {
      throw new SpindleError(
        'DEVICE_BUSY',
        `${path} is the backing file of ${loop.device}, which ${list(loop.holders)} is built on (device mapper, LVM or RAID): a guest writing the file would corrupt it under the host. Release it and detach the loop device (losetup -d ${loop.device}) first, or open the image read-only.`,
      );
    }
  }
}

export class ImageLock {
  private released = false;

  private constructor(
    readonly path: string,
    readonly fd: number,
    readonly write: boolean,
  ) {}

  /**
   * Takes QEMU's locks for a writer (`write`) or a reader on the image file or block device at
   * `path`, first taking our bytes and then testing theirs, as QEMU does: of two programs racing
   * for one image, at least one sees the other. Throws a SpindleError naming the holder.
   */
  static acquire(path: string, opts: { write: boolean }): ImageLock {
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY);
    } catch (err) {
      throw accessError(path, err);
    }
    noteFdOpened(fd);
    const lock = new ImageLock(path, fd, opts.write);
    try {
      if (opts.write && fstatSync(fd).isFile()) refuseLoopBacked(path);
    } catch (err) {
      lock.release();
      throw err;
    }
    const { perm, shared } = lockPermissions(opts.write);
    let conflict: number | null = null;
    try {
      for (const byte of lockBytes(perm, shared)) {
        try {
          ofdLock(fd, byte, 1, 'read');
        } catch (err) {
          if (!isConflict(err)) throw err;
          conflict = byte; // someone holds a write lock on it (not QEMU: QEMU takes read locks only)
          break;
        }
      }
      if (conflict === null) conflict = conflictBytes(perm, shared).find((byte) => ofdTest(fd, byte, 1, 'write') !== null) ?? null;
    } catch (err) {
      lock.release();
      const code = errnoOf(err);
      throw new SpindleError(
        'IO_ERROR',
        `Cannot lock ${path} (${code ?? (err as Error).message}): its filesystem does not support the byte-range locks that keep two programs from writing one image.`,
        code,
        { cause: err },
      );
    }
    if (conflict !== null) {
      lock.release(); // before looking for the holder, so our own locks are not counted
      throw conflictError(path, opts.write, conflict);
    }
    return lock;
  }

  /** Drops the locks (closing their descriptor). Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    noteFdClosed(this.fd);
    closeSync(this.fd);
  }
}

export interface ImageUsage {
  inUse: boolean;
  /** Programs with it open for writing (QEMU's write permission byte), e.g. "qemu-io (pid 12)". */
  writers: string[];
  /** Programs reading it (and allowing no writer meanwhile), e.g. a read-only QEMU disk. */
  readers: string[];
  /** Loop devices reading from this file. */
  loops: LoopUse[];
  /** Every use, as sentences. */
  reasons: string[];
}

/** Who uses `path` now, by QEMU's image locks and loop devices, without taking any lock. */
export function imageUsage(path: string): ImageUsage {
  const reasons: string[] = [];
  const writers: string[] = [];
  const readers: string[] = [];
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch (err) {
    throw accessError(path, err);
  }
  let locked: number[];
  let isFile: boolean;
  try {
    isFile = fstatSync(fd).isFile();
    locked = [...lockBytes(0xf, 0)].filter((byte) => ofdTest(fd, byte, 1, 'write') !== null);
  } finally {
    closeSync(fd);
  }
  if (locked.length) {
    const scan = lockHolders(path, LOCK_PERM_BASE, LOCK_SHARED_BASE + PERM_BITS - 1);
    for (const h of scan.holders) {
      if (holds(h, WRITE_BYTE)) writers.push(h.description);
      else if (holds(h, LOCK_PERM_BASE)) readers.push(h.description);
    }
    if (writers.length)
      reasons.push(`${path} is open for writing by ${list(writers)}: Spindle will not serve it read-write or read-only meanwhile.`);
    if (readers.length)
      reasons.push(
        `${path} is open for reading by ${list(readers)}, which allow${readers.length === 1 ? 's' : ''} no writer meanwhile: Spindle may serve it read-only only.`,
      );
    const others = scan.holders
      .filter((h) => !writers.includes(h.description) && !readers.includes(h.description))
      .map((h) => h.description);
    if (others.length) reasons.push(`${list(others)} hold${others.length === 1 ? 's' : ''} a lock on ${path}'s QEMU lock bytes.`);
    if (!scan.holders.length)
      reasons.push(`Another program (one this user cannot see) holds QEMU's image locks on ${path} (bytes ${locked.join(', ')}).`);
  }
  const loops = isFile ? loopDevicesBacking(path) : [];
  for (const loop of loops) {
    const where = loop.mountpoints.length
      ? `, which is mounted at ${list(loop.mountpoints)}`
      : loop.holders.length
        ? `, which ${list(loop.holders)} is built on`
        : '';
    reasons.push(
      `${path} is the backing file of ${loop.device}${where}: a guest writing it would change what the host sees through that device.`,
    );
  }
  return { inUse: locked.length > 0 || loops.length > 0, writers, readers, loops, reasons };
}
