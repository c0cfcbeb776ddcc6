// Lock files: an exclusive whole-file OFD lock (native/os/lock.cc) held by the one process
// allowed to do something (host a user's VMs, run one VM), with its pid written inside so a refusal
// can name it. The kernel drops the lock with the process, however it dies, so a lock is never
// stale; the file itself may stay behind and means nothing unless locked.
import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { ofdLock, ofdTest } from '../../dataplane/native/os.js';
import { SpindleError, errnoOf } from '../../shared/errors.js';

/** Start 0, length 0: the whole file, however long it grows. */
const WHOLE_FILE = [0, 0] as const;

export interface LockOwner {
  /** 0 when the holder has not written its pid yet. */
  pid: number;
  /** What the holder does ("spindle serve"), when it said. */
  role?: string;
}

export interface HeldLock {
  readonly path: string;
  /** Idempotent. */
  release(): void;
}

/** Takes the lock on `path` (created 0600), or null when another open file (any process) holds it. */
export function tryLock(path: string, role?: string): HeldLock | null {
  let fd: number;
  try {
    // node opens with O_CLOEXEC, so QEMU and other children never inherit the lock.
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  } catch (err) {
    throw new SpindleError('IO_ERROR', `Cannot open the lock file ${path}: ${(err as Error).message}.`, errnoOf(err));
  }
  try {
    try {
      ofdLock(fd, ...WHOLE_FILE, 'write');
    } catch (err) {
      const code = errnoOf(err);
      if (code !== 'EAGAIN' && code !== 'EACCES') throw err;
      closeSync(fd);
      return null;
    }
    ftruncateSync(fd, 0);
    writeSync(fd, JSON.stringify({ pid: process.pid, ...(role ? { role } : {}) }) + '\n', 0);
  } catch (err) {
    closeSync(fd);
    throw new SpindleError('IO_ERROR', `Cannot lock ${path}: ${(err as Error).message}.`, errnoOf(err));
  }
  let held = true;
  return {
    path,
    release() {
      if (!held) return;
      held = false;
      try {
        ftruncateSync(fd, 0); // the next reader finds no pid of a process that is gone
      } finally {
        closeSync(fd); // drops the lock
      }
    },
  };
}

/** Who holds the lock on `path` (asked without taking it), or null when nobody does. */
export function lockOwner(path: string): LockOwner | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return null;
    throw new SpindleError('IO_ERROR', `Cannot read the lock file ${path}: ${(err as Error).message}.`, errnoOf(err));
  }
  try {
    if (ofdTest(fd, ...WHOLE_FILE, 'write') === null) return null;
    try {
      const o = JSON.parse(readFileSync(fd, 'utf8')) as { pid?: unknown; role?: unknown };
      return { pid: Number.isInteger(o.pid) ? (o.pid as number) : 0, ...(typeof o.role === 'string' ? { role: o.role } : {}) };
    } catch {
      return { pid: 0 }; // locked a moment ago, pid not written yet
    }
  } finally {
    closeSync(fd);
  }
}

/** "pid 1234" or "spindle serve, pid 1234", for sentences. */
export function describeOwner(o: LockOwner): string {
  const pid = o.pid ? `pid ${o.pid}` : 'pid unknown';
  return o.role ? `${o.role}, ${pid}` : pid;
}
