// Classifies a disk path (image file or host block device) and refuses host devices that are in
// use: mounted (the device or one of its partitions), held by another driver (LVM, dm-crypt, md),
// used as swap, or holding the root filesystem. Reads /proc and /sys directly, so it needs no
// root. (The advisor's host-devices module lists devices for the UI; this only guards attach.)
import { statSync, readFileSync, readdirSync, realpathSync, accessSync, constants } from 'node:fs';
import { basename, join } from 'node:path';
import { SpindleError, errnoOf } from '../errors.js';

export type DiskKind = 'file' | 'block';

// glibc's dev_t encoding (major/minor macros), on the 64-bit value.
const majorOf = (dev: bigint) => Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
const minorOf = (dev: bigint) => Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));

/** 'file' or 'block' for an existing path; a SpindleError a user understands for anything else. */
export function diskKindOf(path: string): DiskKind {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const e = errnoOf(err);
    if (e === 'ENOENT') throw new SpindleError('NOT_FOUND', `${path} does not exist.`, e);
    if (e === 'EACCES') throw new SpindleError('PERMISSION_DENIED', `You may not access ${path}.`, e);
    throw new SpindleError('IO_ERROR', `Cannot read ${path}: ${(err as Error).message}.`, e);
  }
  if (st.isDirectory()) throw new SpindleError('IS_DIRECTORY', `${path} is a directory, not a disk image or a block device.`);
  if (st.isBlockDevice()) return 'block';
  if (st.isFile()) return 'file';
  throw new SpindleError('NOT_A_DISK', `${path} is neither a disk image file nor a block device.`);
}

/** Throws when the process may not read (and, unless readOnly, write) `path`, naming the group that grants access. */
export function checkAccess(path: string, readOnly: boolean): void {
  try {
    accessSync(path, readOnly ? constants.R_OK : constants.R_OK | constants.W_OK);
  } catch (err) {
    const st = statSync(path);
    const group = groupName(st.gid);
    const how = readOnly ? 'read' : 'read and write';
    const hint = st.isBlockDevice() && group ? ` Members of the '${group}' group may; add yourself with: sudo adduser $USER ${group} (then log in again).` : '';
    throw new SpindleError('PERMISSION_DENIED', `You may not ${how} ${path}.${hint}`, errnoOf(err));
  }
}

function groupName(gid: number): string | null {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (id !== undefined && Number(id) === gid) return name ?? null;
    }
  } catch { /* no /etc/group */ }
  return null;
}

/** Why a host block device cannot be given to a VM, or null when it is free. */
export function blockDeviceRefusal(path: string): string | null {
  const st = statSync(path, { bigint: true });
  const maj = majorOf(st.rdev);
  const min = minorOf(st.rdev);
  const sysDir = realpathSync(`/sys/dev/block/${maj}:${min}`);
  const name = basename(sysDir);
  // The device and its partitions, as "maj:min" → kernel name.
  const members = new Map<string, string>([[`${maj}:${min}`, name]]);
  for (const entry of safeReaddir(sysDir)) {
    const devFile = join(sysDir, entry, 'dev');
    try {
      if (readFileSync(join(sysDir, entry, 'partition'), 'utf8')) members.set(readFileSync(devFile, 'utf8').trim(), entry);
    } catch { /* not a partition */ }
  }
  const rootDev = statSync('/', { bigint: true }).dev;
  const rootKey = `${majorOf(rootDev)}:${minorOf(rootDev)}`;
  if (members.has(rootKey)) return `${path} holds the root filesystem (/); Spindle never gives it to a VM.`;
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && members.has(f[2]!)) {
      return `${path} is in use: /dev/${members.get(f[2]!)} is mounted on ${unescapeMount(f[4]!)}. Unmount it first.`;
    }
  }
  for (const [, part] of members) {
    const holdersDir = part === name ? join(sysDir, 'holders') : join(sysDir, part, 'holders');
    const holders = safeReaddir(holdersDir);
    if (holders.length) return `${path} is in use: /dev/${part} is held by ${holders.join(', ')} (LVM, RAID or encryption). Release it first.`;
  }
  try {
    for (const line of readFileSync('/proc/swaps', 'utf8').split('\n').slice(1)) {
      const dev = line.split(/\s+/)[0];
      if (dev && [...members.values()].some((m) => dev === `/dev/${m}`)) return `${path} is in use as swap (${dev}). Run swapoff first.`;
    }
  } catch { /* no /proc/swaps */ }
  return null;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

// mountinfo escapes space, tab, newline and backslash as octal.
const unescapeMount = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
