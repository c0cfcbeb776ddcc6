// Child-process helpers for tests and benchmarks: nothing started here outlives the test process,
// and a process's CPU time is read the way the benchmarks report it.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const live = new Set<ChildProcess>();
let hookInstalled = false;

/** SIGKILLs `child` if this process exits while it still runs (a failed test must not leak it). */
export function killOnExit(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!hookInstalled) {
    hookInstalled = true;
    const killAll = (): void => {
      for (const c of live) c.kill('SIGKILL');
    };
    process.once('exit', killAll);
    // A test run interrupted by a signal skips 'exit' handlers: kill the children, then die of the signal.
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        killAll();
        process.kill(process.pid, sig);
      });
    }
  }
}

/** Resolves with the exit code; SIGTERM first, SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

let clockTicks: number | undefined;
const ticksPerSecond = (): number => (clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100);

/**
 * User + system CPU seconds of process `pid`, all its threads included (the thread group's
 * totals in /proc/PID/stat also count threads that already exited, e.g. io_uring workers).
 */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // comm (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]); // field 14 overall
  const stime = Number(fields[12]); // field 15 overall
  return (utime + stime) / ticksPerSecond();
}

/** Polls until `path` exists, `failed()` returns a reason, or the timeout passes. */
export async function waitForPath(path: string, opts: { timeoutMs: number; failed?: () => string | null }): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const reason = opts.failed?.();
    if (reason) throw new Error(reason);
    if (existsSync(path)) return;
    if (Date.now() > deadline) throw new Error(`${path} did not appear within ${opts.timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
