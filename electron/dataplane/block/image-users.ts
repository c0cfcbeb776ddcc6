// Who uses an image: the processes holding byte-range locks on it, and the loop devices reading
// from it (with where they are mounted). Read from /proc and /sys only; nothing is opened for I/O.
//
// F_OFD_GETLK reports l_pid = -1 for an OFD lock and /proc/locks prints -1 as well, so the owner
// of an OFD lock is found through /proc/PID/fdinfo/FD: its "lock:" lines list the locks held by
// that open file description (fs/proc/fd.c, show_fd_locks).
import { readFileSync, readdirSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { basename } from 'node:path';
import { holdersOf, majMin, mounts, partitionsOf } from './sysfs.js';

export interface HeldLock {
  type: 'read' | 'write';
  start: number;
  /** Inclusive; Infinity for a lock to the end of the file. */
  end: number;
}

export interface LockHolder {
  pid: number;
  /** "qemu-storage-daemon (pid 123)", "spindle export (pid 456)", "spindle (pid 789, this process)". */
  description: string;
  locks: HeldLock[];
}

/** One lock line of /proc/locks or of an fdinfo ("1: OFDLCK ADVISORY  READ -1 fe:00:2147805 100 101"). */
interface LockLine extends HeldLock {
  kind: string;
  pid: number;
  major: number;
  minor: number;
  ino: number;
}

const LOCK_RE =
  /^\s*(?:lock:\s*)?\d+:\s+(OFDLCK|POSIX|FLOCK|DELEG|LEASE)\s+\S+\s+(READ|WRITE)\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\d+|EOF)\s*$/;

function parseLockLine(line: string): LockLine | null {
  if (line.includes('->')) return null; // a waiter, not a holder
  const m = LOCK_RE.exec(line);
  if (!m) return null;
  return {
    kind: m[1]!,
    type: m[2] === 'WRITE' ? 'write' : 'read',
    pid: Number(m[3]),
    major: parseInt(m[4]!, 16),
    minor: parseInt(m[5]!, 16),
    ino: Number(m[6]),
    start: Number(m[7]),
    end: m[8] === 'EOF' ? Infinity : Number(m[8]),
  };
}

const sameFile = (l: LockLine, st: Stats): boolean => l.ino === st.ino && `${l.major}:${l.minor}` === majMin(st.dev);

const readText = (p: string): string | null => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return null;
  }
};

/** A short name for a process from its command line: "qemu-io", "spindle export", "node". */
export function describeProcess(pid: number): string {
  const suffix = pid === process.pid ? `pid ${pid}, this process` : `pid ${pid}`;
  const argv = (readText(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean);
  if (!argv.length) return `process ${pid}${pid === process.pid ? ' (this process)' : ''}`;
  let name = basename(argv[0]!);
  // An interpreter running a script: name the script and its subcommand ("spindle export").
  if (/^(node|nodejs|electron|python3?)$/.test(name) && argv[1] && !argv[1].startsWith('-')) {
    name = basename(argv[1]).replace(/\.[cm]?js$|\.py$/, '');
    if (argv[2] && !argv[2].startsWith('-') && !argv[2].includes('/')) name += ` ${argv[2]}`;
  }
  return `${name} (${suffix})`;
}

export interface LockScan {
  holders: LockHolder[];
  /** Locks on the file whose owner could not be found (a process of another user, as non-root). */
  unattributed: HeldLock[];
}

/**
 * Every process holding a byte-range lock on `path` (the inode it names) that overlaps
 * [from, to]. Cheap when nobody holds one (a single read of /proc/locks); otherwise walks
 * /proc/PID/fd of the processes this user may see.
 */
export function lockHolders(path: string, from = 0, to = Infinity): LockScan {
  const st = statSync(path);
  const overlaps = (l: HeldLock) => l.start <= to && l.end >= from;
  const all = (readText('/proc/locks') ?? '')
    .split('\n')
    .map(parseLockLine)
    .filter((l): l is LockLine => l !== null && sameFile(l, st) && overlaps(l));
  if (!all.length) return { holders: [], unattributed: [] };
  const byPid = new Map<number, HeldLock[]>();
  const add = (pid: number, l: HeldLock) => {
    const list = byPid.get(pid) ?? [];
    if (!list.some((x) => x.start === l.start && x.end === l.end && x.type === l.type))
      list.push({ type: l.type, start: l.start, end: l.end });
    byPid.set(pid, list);
  };
  // Classic POSIX locks name their process; OFD locks (pid -1) are found through fdinfo.
  for (const l of all) if (l.pid > 0) add(l.pid, l);
  if (all.some((l) => l.pid <= 0)) {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${entry}/fd`);
      } catch {
        continue; // gone, or another user's process
      }
      for (const fd of fds) {
        try {
          if (!readlinkSync(`/proc/${entry}/fd/${fd}`).startsWith('/')) continue; // sockets, pipes, anon inodes
          const s = statSync(`/proc/${entry}/fd/${fd}`);
          if (s.ino !== st.ino || s.dev !== st.dev) continue;
        } catch {
          continue;
        }
        for (const line of (readText(`/proc/${entry}/fdinfo/${fd}`) ?? '').split('\n')) {
          const l = line.startsWith('lock:') ? parseLockLine(line) : null;
          if (l && l.kind === 'OFDLCK' && sameFile(l, st) && overlaps(l)) add(Number(entry), l);
        }
      }
    }
  }
  const holders = [...byPid].map(([pid, locks]) => ({ pid, description: describeProcess(pid), locks }));
  const found = (l: LockLine) => holders.some((h) => h.locks.some((x) => x.start === l.start && x.end === l.end && x.type === l.type));
  const unattributed = all.filter((l) => !found(l)).map(({ type, start, end }) => ({ type, start, end }));
  return { holders, unattributed };
}

export interface LoopUse {
  /** "/dev/loop3" */
  device: string;
  /** Where the loop device or one of its partitions is mounted. */
  mountpoints: string[];
  /** Devices stacked on it (device mapper, LVM, RAID). */
  holders: string[];
}

/** The loop devices whose backing file is the file `path` names (same device and inode). */
export function loopDevicesBacking(path: string): LoopUse[] {
  let st: Stats;
  let names: string[];
  try {
    st = statSync(path);
    names = readdirSync('/sys/block').filter((n) => n.startsWith('loop'));
  } catch {
    return [];
  }
  const out: LoopUse[] = [];
  const mountList = mounts();
  for (const name of names) {
    const backing = readText(`/sys/block/${name}/loop/backing_file`)
      ?.trim()
      .replace(/ \(deleted\)$/, '');
    if (!backing) continue;
    try {
      const b = statSync(backing);
      if (b.ino !== st.ino || b.dev !== st.dev) continue;
    } catch {
      continue; // deleted, or not visible in this mount namespace
    }
    const mountpoints: string[] = [];
    const holders: string[] = [];
    for (const n of [name, ...partitionsOf(name)]) {
      const devNum = readText(`/sys/class/block/${n}/dev`)?.trim();
      if (devNum) mountpoints.push(...mountList.filter((m) => m.devNum === devNum).map((m) => m.mountpoint));
      holders.push(...holdersOf(n).map((h) => `/dev/${h}`));
    }
    out.push({ device: `/dev/${name}`, mountpoints, holders });
  }
  return out;
}
