// Small readers over /sys/dev/block, /proc/self/mountinfo, /proc/swaps and /etc/group, shared by
// the host-device list and the file advisor. Device numbers are "MAJ:MIN" strings, as sysfs spells them.
import { readFileSync, readdirSync, realpathSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';

/** "MAJ:MIN" of a raw dev_t as Node's fs.Stats reports it (glibc's encoding). */
export function majMin(dev: number | bigint): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

const readText = (p: string): string | null => {
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    return null;
  }
};

/** The /sys/class/block name ("sda1", "loop3", "dm-0") of a device number, or null. */
export function blockName(devNum: string): string | null {
  try {
    return basename(realpathSync(`/sys/dev/block/${devNum}`));
  } catch {
    return null;
  }
}

/** The whole disk a partition belongs to ("sda" for "sda1"); the name itself for a whole disk. */
export function wholeDisk(name: string): string {
  const dir = realpathSync(`/sys/class/block/${name}`);
  return existsSync(join(dir, 'partition')) ? basename(join(dir, '..')) : name;
}

export function partitionsOf(name: string): string[] {
  try {
    const dir = realpathSync(`/sys/class/block/${name}`);
    return readdirSync(dir).filter((n) => existsSync(join(dir, n, 'partition')));
  } catch {
    return [];
  }
}

const listDir = (p: string): string[] => {
  try {
    return readdirSync(p);
  } catch {
    return [];
  }
};
export const holdersOf = (name: string): string[] => listDir(`/sys/class/block/${name}/holders`);
export const slavesOf = (name: string): string[] => listDir(`/sys/class/block/${name}/slaves`);

/** An attribute of the request queue behind a block device name (a partition uses its disk's), or null. */
function queueAttribute(name: string, attr: string): string | null {
  try {
    return readText(`/sys/class/block/${wholeDisk(name)}/queue/${attr}`);
  } catch {
    return null; // no such device
  }
}

const positiveInt = (v: string | null): number | null => {
  const n = v === null ? NaN : Number(v);
  return Number.isInteger(n) && n > 0 ? n : null;
};

/** The logical block size of the queue behind a block device name (walking up from a partition). */
export const queueLogicalBlockSize = (name: string): number | null => positiveInt(queueAttribute(name, 'logical_block_size'));
export const queuePhysicalBlockSize = (name: string): number | null => positiveInt(queueAttribute(name, 'physical_block_size'));
/** Largest discard the device takes; 0 when it cannot discard. */
export const queueDiscardMaxBytes = (name: string): number => positiveInt(queueAttribute(name, 'discard_max_bytes')) ?? 0;

/**
 * Block sizes of the block device with number `dev` (a file's st_dev: the device holding it; a
 * device's st_rdev), or null when it is not a block device (tmpfs, overlay, network filesystems).
 */
export function blockSizesOf(dev: number | bigint): { logical: number; physical: number } | null {
  const name = blockName(majMin(dev));
  const logical = name ? queueLogicalBlockSize(name) : null;
  if (!name || !logical) return null;
  return { logical, physical: queuePhysicalBlockSize(name) ?? logical };
}

/** The file a loop device reads from, or null. */
export const loopBackingFile = (name: string): string | null => readText(`/sys/class/block/${name}/loop/backing_file`);

export interface Mount {
  devNum: string;
  mountpoint: string;
  fstype: string;
  source: string;
}

/** Where block device number `dev` itself is mounted (its first mount), or null. */
export function mountPointOf(dev: number | bigint): string | null {
  const id = majMin(dev);
  return mounts().find((m) => m.devNum === id)?.mountpoint ?? null;
}

/** Mounts of this process's mount namespace (/proc/self/mountinfo), with octal escapes decoded. */
export function mounts(): Mount[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return (readText('/proc/self/mountinfo') ?? '')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.split(' ');
      const sep = f.indexOf('-');
      return { devNum: f[2]!, mountpoint: unescape(f[4]!), fstype: f[sep + 1]!, source: unescape(f[sep + 2] ?? '') };
    });
}

/** Real paths of active swap files and devices. */
export function swaps(): string[] {
  return (readText('/proc/swaps') ?? '')
    .split('\n')
    .slice(1)
    .filter(Boolean)
    .map((l) => l.split(/\s+/)[0]!.replace(/\\040/g, ' '));
}

/** The group name of a gid from /etc/group ("disk"), or the number as text. */
export function groupName(gid: number): string {
  for (const line of (readText('/etc/group') ?? '').split('\n')) {
    const [name, , id] = line.split(':');
    if (name && Number(id) === gid) return name;
  }
  return String(gid);
}

/**
 * Block device names that carry the host's root filesystem: the device of `/`, everything below it
 * (dm/md slaves, recursively) and the whole disks of those partitions. Empty when `/` is not on a
 * block device (overlay or tmpfs roots in containers).
 */
export function rootDeviceNames(): Set<string> {
  const out = new Set<string>();
  const rootMount = mounts()
    .filter((m) => m.mountpoint === '/')
    .pop();
  const start = rootMount ? blockName(rootMount.devNum) : null;
  const visit = (name: string) => {
    if (out.has(name)) return;
    out.add(name);
    try {
      out.add(wholeDisk(name));
    } catch {
      /* vanished */
    }
    slavesOf(name).forEach(visit);
  };
  if (start) visit(start);
  return out;
}
