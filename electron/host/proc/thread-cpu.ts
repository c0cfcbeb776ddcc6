// CPU time of single threads of this process, for a disk's backend CPU: its IOThread (the worker
// that runs the vhost-user server, virtio-blk and the engine's submit/reap) and the io_uring
// workers the kernel starts on that thread's behalf (iou-wrk-<tid>, which exit when idle).
import { readdirSync, readFileSync } from 'node:fs';

/** Linux's USER_HZ: /proc/.../stat counts CPU time in these ticks (100 on every mainstream arch). */
const CLOCK_TICKS = 100;

/** Cumulative CPU seconds of thread `tid` of this process, or null when it is gone. */
export function threadCpuSeconds(tid: number): number | null {
  // schedstat's first field is nanoseconds on CPU (exact); stat's utime+stime is in 10 ms ticks.
  try {
    const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    if (Number.isFinite(ns)) return ns / 1e9;
  } catch { /* no CONFIG_SCHED_INFO, or the thread is gone: try stat */ }
  try {
    const text = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const sec = (Number(rest[11]) + Number(rest[12])) / CLOCK_TICKS;
    return Number.isFinite(sec) ? sec : null;
  } catch {
    return null;
  }
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
    } catch { /* no /proc: nothing to add */ }
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
