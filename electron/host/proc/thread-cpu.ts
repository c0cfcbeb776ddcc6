// The one /proc CPU reader: single threads of this process by tid, for a disk's backend CPU (its
// IOThread, the worker that runs the vhost-user server, virtio-blk and the engine's submit/reap,
// and the io_uring workers the kernel starts on that thread's behalf, iou-wrk-<tid>, which exit
// when idle), and whole processes by pid (QEMU).
import { readdirSync, readFileSync } from 'node:fs';

/** Linux's USER_HZ: /proc/.../stat counts CPU time in these ticks (100 on every mainstream arch). */
const CLOCK_TICKS = 100;

/** utime + stime in seconds from a /proc stat file, or null when it is gone or unreadable. */
function statCpuSeconds(file: string): number | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: parse after its last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / CLOCK_TICKS : null;
}

/** Cumulative CPU seconds of a process (all threads), or null when it is gone. */
export function processCpuSeconds(pid: number): number | null {
  return statCpuSeconds(`/proc/${pid}/stat`);
}

/** Cumulative CPU seconds of thread `tid` of this process, or null when it is gone. */
export function threadCpuSeconds(tid: number): number | null {
  // schedstat's first field is nanoseconds on CPU (exact); stat's utime+stime is in 10 ms ticks.
  try {
    const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    if (Number.isFinite(ns)) return ns / 1e9;
  } catch {
    /* no CONFIG_SCHED_INFO, or the thread is gone: try stat */
  }
  return statCpuSeconds(`/proc/self/task/${tid}/stat`);
}

/**
 * Cumulative CPU seconds of the io_uring workers serving thread `ownerTid`. They come and go, so
 * the last value seen of each is kept: the total never goes backwards when one exits (the CPU a
 * worker spent after the last look before it exited is missed, at most one sample interval's).
 */
export class IoUringWorkerCpu {
  private readonly seen = new Map<number, number>();
  private gone = 0;

  constructor(private readonly ownerTid: number) {}

  seconds(): number {
    const name = `iou-wrk-${this.ownerTid}`;
    const alive = new Set<number>();
    let tids: string[] = [];
    try {
      tids = readdirSync('/proc/self/task');
    } catch {
      /* no /proc: nothing to add */
    }
    for (const t of tids) {
      const tid = Number(t);
      let comm: string;
      try {
        comm = readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trimEnd();
      } catch {
        continue;
      }
      if (comm !== name) continue;
      const sec = threadCpuSeconds(tid);
      if (sec === null) continue;
      alive.add(tid);
      this.seen.set(tid, sec);
    }
    for (const [tid, sec] of this.seen) {
      if (!alive.has(tid)) {
        this.gone += sec;
        this.seen.delete(tid);
      }
    }
    let total = this.gone;
    for (const sec of this.seen.values()) total += sec;
    return total;
  }
}

/** A disk's IOThread (by the tid it reported, DiskServer.threadTid) with its io_uring workers. */
export class IoThreadCpu {
  private readonly workers: IoUringWorkerCpu;

  constructor(readonly tid: number) {
    this.workers = new IoUringWorkerCpu(tid);
  }

  /** Cumulative CPU seconds of the thread and its io_uring workers, or null once the thread is gone. */
  seconds(): number | null {
    const thread = threadCpuSeconds(this.tid);
    return thread === null ? null : thread + this.workers.seconds();
  }
}
