// CPU time of the threads that serve one disk inside this process, read from /proc/self/task:
// the disk's IOThread (a worker_thread: virtio-blk, vhost-user and the engine's submit/reap) and
// io_uring's kernel workers it spawns (iou-wrk-*, part of this process). The thread pool's workers
// are counted by the engine itself (DiskCounters cpu.poolNs), so they are left out here.
import { readFileSync, readdirSync } from 'node:fs';

/** Thread ids of this process now. */
export function listThreads(): Set<number> {
  return new Set(readdirSync('/proc/self/task').map(Number).filter(Number.isInteger));
}

/** CPU nanoseconds of one thread of this process, or null once it has exited. schedstat's first
 *  field is exact; stat's utime+stime (clock ticks) is the fallback where schedstat is absent. */
export function threadCpuNs(tid: number): number | null {
  try {
    const first = readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0];
    const ns = Number(first);
    if (Number.isFinite(ns)) return ns;
  } catch {
    /* fall through to stat */
  }
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 1e7; // utime, stime at USER_HZ 100
  } catch {
    return null;
  }
}

function comm(tid: number): string {
  try {
    return readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/**
 * The CPU of one disk server's IOThread and its io_uring workers. Built from the threads that
 * appeared while the server started: a worker_thread start adds exactly one thread; if several
 * appeared (another disk started at the same moment) the IOThread cannot be told apart and only
 * the engine's own counters are used (`known` is false).
 */
export class DiskThreadCpu {
  readonly ioThread: number | null;

  constructor(before: Set<number>, after: Set<number>) {
    const born = [...after].filter((t) => !before.has(t));
    this.ioThread = born.length === 1 ? born[0]! : null;
  }

  get known(): boolean {
    return this.ioThread !== null;
  }

  /** IOThread CPU plus every io_uring worker of it alive now, in ns (0 when the IOThread is unknown). */
  sampleNs(): number {
    if (this.ioThread === null) return 0;
    let ns = threadCpuNs(this.ioThread) ?? 0;
    const worker = `iou-wrk-${this.ioThread}`;
    for (const tid of listThreads()) if (comm(tid) === worker) ns += threadCpuNs(tid) ?? 0;
    return ns;
  }
}
