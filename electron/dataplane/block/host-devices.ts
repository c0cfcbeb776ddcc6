// Host block devices a VM could use: what lsblk and /sys say about each, and whether
// the host is using it. A device that is mounted, held by another device (LVM, RAID, dm-crypt),
// used as swap, or carrying `/` is never offered: `usable` is false and `reason` says why.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync, realpathSync, statSync, type Stats } from 'node:fs';
import { basename } from 'node:path';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { detectFormat, nonRawError } from './format-detect.js';
import { permissionDenied } from './permission.js';
import { blockName, holdersOf, majMin, mounts, partitionsOf, rootDeviceNames, swaps, type Mount } from './sysfs.js';

export interface HostDevice {
  name: string;
  path: string;
  /** lsblk TYPE: disk, part, loop, rom, lvm, crypt, raid1, ... */
  type: string;
  sizeBytes: number;
  model: string | null;
  rotational: boolean;
  removable: boolean;
  /** The kernel marks it read-only (lsblk RO): a VM may use it only read-only. */
  readOnly: boolean;
  /** Filesystem or signature found on it (lsblk FSTYPE), e.g. ext4, LVM2_member, swap. */
  fstype: string | null;
  mountpoints: string[];
  holders: string[];
  partitions: HostDevice[];
  usable: boolean;
  /** Why it is not usable, as a sentence; null when usable. */
  reason: string | null;
}

export interface DeviceUsage {
  path: string;
  name: string;
  /** Mount points of the device and of its partitions. */
  mountpoints: string[];
  holders: string[];
  holdsRoot: boolean;
  swap: boolean;
  /** Result of an O_EXCL open: 'free', 'busy' (EBUSY: someone holds it exclusively), or 'not-tested'. */
  exclusiveOpen: 'free' | 'busy' | 'not-tested';
  inUse: boolean;
  /** Every reason it is in use, as sentences. */
  reasons: string[];
}

interface LsblkNode {
  name: string;
  path: string;
  size: number | null;
  model: string | null;
  rota: boolean;
  rm: boolean;
  ro: boolean;
  type: string;
  mountpoints?: (string | null)[];
  fstype: string | null;
  pkname: string | null;
  children?: LsblkNode[];
}

const LSBLK_COLUMNS = 'NAME,PATH,SIZE,MODEL,ROTA,RM,RO,TYPE,MOUNTPOINTS,FSTYPE,PKNAME';

function lsblk(args: string[] = []): LsblkNode[] {
  let out: string;
  try {
    out = execFileSync('lsblk', ['--json', '-b', '-o', LSBLK_COLUMNS, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') throw new SpindleError('INTERNAL', "lsblk is missing: install Debian's util-linux package.", 'ENOENT');
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new SpindleError('IO_ERROR', `lsblk failed: ${stderr || (err as Error).message}`);
  }
  return (JSON.parse(out) as { blockdevices: LsblkNode[] }).blockdevices ?? [];
}

/** Filesystem signature by probing the device itself (blkid -p): lsblk's FSTYPE comes from the udev database, absent without udevd. */
function probeFsType(path: string): string | null {
  try {
    return (
      execFileSync('blkid', ['-p', '-o', 'value', '-s', 'TYPE', path], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 5000,
      }).trim() || null
    );
  } catch {
    return null; // exit 2: no signature; or blkid missing or not permitted
  }
}

/** Usage facts for one device name, from mountinfo, sysfs holders, swaps and the root chain. */
function usageOf(
  name: string,
  path: string,
  ctx: { mounts: Mount[]; swaps: string[]; root: Set<string> },
): Omit<DeviceUsage, 'exclusiveOpen'> {
  const reasons: string[] = [];
  const parts = partitionsOf(name);
  const numOf = (n: string) => {
    try {
      return statSync(`/dev/${n}`).rdev;
    } catch {
      return null;
    }
  };
  const mountpoints: string[] = [];
  const holders = new Set<string>();
  let holdsRoot = false;
  let swap = false;
  for (const n of [name, ...parts]) {
    const rdev = n === name ? statSync(path).rdev : numOf(n);
    const dn = rdev === null ? null : majMin(rdev);
    const label = n === name ? path : `its partition /dev/${n}`;
    const mp = dn ? ctx.mounts.filter((m) => m.devNum === dn).map((m) => m.mountpoint) : [];
    if (mp.length) {
      mountpoints.push(...mp);
      reasons.push(`${label} is mounted at ${mp.join(', ')}: unmount it first; Spindle never gives a guest a disk the host is using.`);
    }
    const h = holdersOf(n);
    if (h.length) {
      h.forEach((x) => holders.add(x));
      reasons.push(`${label} is held by ${h.map((x) => `/dev/${x}`).join(', ')} (device mapper, LVM or RAID): release it first.`);
    }
    if (ctx.swaps.some((s) => s === `/dev/${n}` || safeReal(s) === safeReal(`/dev/${n}`))) {
      swap = true;
      reasons.push(`${label} is in use as swap.`);
    }
    if (ctx.root.has(n)) holdsRoot = true;
  }
  if (holdsRoot) reasons.unshift(`${path} holds the host's root filesystem (/): Spindle never attaches it to a VM.`);
  return { path, name, mountpoints, holders: [...holders], holdsRoot, swap, inUse: reasons.length > 0, reasons };
}

const safeReal = (p: string): string => {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
};

function context() {
  return { mounts: mounts(), swaps: swaps(), root: rootDeviceNames() };
}

/**
 * What a disk path is: 'file' (an image) or 'block' (a host device), with its stat. Everything else
 * (missing, a directory, a character device, a FIFO) is refused with a sentence.
 */
export function statDiskPath(path: string): { kind: 'file' | 'block'; stats: Stats } {
  if (typeof path !== 'string' || path === '')
    throw new SpindleError('INVALID_ARGUMENT', 'No path given: name an image file or a block device.');
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'ENOTDIR')
      throw new SpindleError('NOT_FOUND', `${path} does not exist: a part of it is not a directory.`, code, { cause: err });
    throw accessError(path, err);
  }
  if (st.isDirectory()) throw new SpindleError('IS_DIRECTORY', `${path} is a directory: give the path of an image file or a block device.`);
  if (st.isBlockDevice()) return { kind: 'block', stats: st };
  if (st.isFile()) return { kind: 'file', stats: st };
  const what = st.isCharacterDevice() ? 'a character device' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'not a regular file';
  throw new SpindleError('NOT_A_DISK', `${path} is ${what}, not an image file or a block device.`);
}

export const diskKindOf = (path: string): 'file' | 'block' => statDiskPath(path).kind;

/**
 * Opens an image file or device the way a disk server will (read-only, or read-write unless
 * `readOnly`) to see that it is there, we may use it and it is a raw image; throws sentences for
 * the user (the group that grants access, a read-only device or filesystem, a qcow2 image). Only
 * the header is read; nothing is written.
 */
export function checkDeviceAccess(path: string, opts: { write?: boolean; formatKnown?: boolean } = {}): void {
  try {
    closeSync(openSync(path, opts.write ? constants.O_RDWR : constants.O_RDONLY));
  } catch (err) {
    const code = errnoOf(err);
    if (opts.write && (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') && isReadOnlyDevice(path)) {
      throw new SpindleError('READ_ONLY', `${path} is a read-only device: attach it read-only.`, code, { cause: err });
    }
    throw accessError(path, err, opts.write);
  }
  // Never give a guest a container's bytes as a raw disk (a qcow2 written as raw is destroyed).
  // A disk whose format is stored is not probed again: its header may be the guest's data.
  const format = opts.formatKnown ? null : detectFormat(path);
  if (format) throw nonRawError(path, format);
  // Linux opens a read-only block device for writing and fails each write with EPERM: ask the flag.
  if (opts.write && isReadOnlyDevice(path)) throw new SpindleError('READ_ONLY', `${path} is a read-only device: attach it read-only.`);
}

/** The kernel's read-only flag of a block device (/sys/class/block/NAME/ro); false for files. */
function isReadOnlyDevice(path: string): boolean {
  try {
    const st = statSync(path);
    if (!st.isBlockDevice()) return false;
    const name = blockName(majMin(st.rdev));
    return name !== null && readFileSync(`/sys/class/block/${name}/ro`, 'utf8').trim() === '1';
  } catch {
    return false;
  }
}

/** A SpindleError for a failed open of `path` (for writing too when `write`), saying why when denied (permission.ts). */
export function accessError(path: string, err: unknown, write = false): SpindleError {
  const code = errnoOf(err);
  if (code === 'ENOENT') return new SpindleError('NOT_FOUND', `${path} does not exist.`, code, { cause: err });
  if (code === 'EACCES' || code === 'EPERM') return permissionDenied(path, err, write);
  if (code === 'EROFS')
    return new SpindleError('READ_ONLY', `${path} is on a read-only filesystem: attach it read-only.`, code, { cause: err });
  if (code === 'ENXIO' || code === 'ENOMEDIUM')
    return new SpindleError('NOT_A_DISK', `${path} has no medium or no backing device attached.`, code, { cause: err });
  return new SpindleError('IO_ERROR', `Cannot open ${path}: ${(err as Error).message}.`, code, { cause: err });
}

/**
 * Whether the host uses the block device at `path` (mounted, held, swap, carries `/`, or opened
 * exclusively by someone else: an O_EXCL open fails with EBUSY). Throws for a path that is not a
 * block device.
 */
export function deviceUsage(path: string, opts: { exclusiveTest?: boolean } = {}): DeviceUsage {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw accessError(path, err);
  }
  if (!st.isBlockDevice()) throw new SpindleError('NOT_A_DISK', `${path} is not a block device.`);
  const name = blockName(majMin(st.rdev)) ?? basename(path);
  const usage = usageOf(name, path, context());
  let exclusiveOpen: DeviceUsage['exclusiveOpen'] = 'not-tested';
  if (opts.exclusiveTest !== false) {
    try {
      // O_EXCL without O_CREAT on a block device: fails with EBUSY while mounted or held open exclusively.
      closeSync(openSync(path, constants.O_RDONLY | constants.O_EXCL));
      exclusiveOpen = 'free';
    } catch (err) {
      const code = errnoOf(err);
      // Already known to be in use: a refused open adds nothing and must not hide the reasons.
      if (code !== 'EBUSY' && usage.inUse) return { ...usage, exclusiveOpen };
      if (code !== 'EBUSY') throw accessError(path, err);
      exclusiveOpen = 'busy';
      if (!usage.inUse)
        usage.reasons.push(`${path} is open exclusively by another program (a VM, a filesystem or a RAID/LVM tool): close that first.`);
      usage.inUse = true;
    }
  }
  return { ...usage, exclusiveOpen };
}

/** Every host block device (partitions nested under their disk), with whether a VM may use it. */
export function listHostDevices(): HostDevice[] {
  const ctx = context();
  const build = (n: LsblkNode): HostDevice => {
    const usage = usageOf(n.name, n.path, ctx);
    const sizeBytes = n.size ?? 0;
    const reasons = [...usage.reasons];
    if (sizeBytes === 0) reasons.push(`${n.path} has size 0 (no medium or no backing file).`);
    if (n.type === 'rom') reasons.push(`${n.path} is an optical drive: attach ISO images as a CD-ROM instead.`);
    return {
      name: n.name,
      path: n.path,
      type: n.type,
      sizeBytes,
      model: n.model?.trim() || null,
      rotational: Boolean(n.rota),
      removable: Boolean(n.rm),
      readOnly: Boolean(n.ro),
      fstype: n.fstype ?? (sizeBytes > 0 ? probeFsType(n.path) : null),
      mountpoints: usage.mountpoints,
      holders: usage.holders,
      partitions: (n.children ?? []).filter((c) => c.type === 'part').map(build),
      usable: reasons.length === 0,
      reason: reasons.length ? reasons.join(' ') : null,
    };
  };
  return lsblk().map(build);
}
