// Shared benchmark plumbing: is the CLI there, where the disks live, one server run with its CPU.
import { spawnSync } from 'node:child_process';
import { closeSync, fsyncSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { DiskServer, DiskServerFactory, DiskServerOptions } from '../../guest/disk-server.js';
import { spindleBin } from '../../guest/disk-server.js';
import { attachLoop, makeFile, tempDir } from '../../lib/loop.js';
import { cpuSeconds } from '../../lib/proc.js';
import { runLoadgen, type LoadgenOptions, type LoadgenResult } from './loadgen.js';

/** Throws a clear sentence when this checkout has no `spindle <command>` yet. */
export function requireSpindleCommands(names: string[]): void {
  for (const name of names) {
    const r = spawnSync(process.execPath, [spindleBin(), name, '--help'], { encoding: 'utf8' });
    if (r.status !== 0) {
      throw new Error(
        `'spindle ${name}' is not available in this checkout (build with npm run build:ts, or merge the branch that adds it):\n${(r.stdout + r.stderr).trim()}`,
      );
    }
  }
}

export interface BenchTarget {
  name: string;
  path: string;
  cleanup(): void;
}

/** `path` with its dirty pages on disk: writeback must not run under the next measurement. */
export function synced(path: string): string {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return path;
}

/** A fully written file whose dirty pages are on disk. */
export function writtenAndSynced(path: string, size: number): string {
  makeFile(path, size, { written: true });
  return synced(path);
}

/** A fully written file of `size` on the machine's disk (os.tmpdir()). */
export function writtenFileTarget(size: number): BenchTarget {
  const dir = tempDir('spindle-bench-file-');
  const path = writtenAndSynced(join(dir.path, 'disk.img'), size);
  return { name: 'written file (host disk)', path, cleanup: dir.cleanup };
}

/** A loop device over a fully written file in /dev/shm: RAM speed, so the software cost shows. */
export function shmLoopTarget(size: number): BenchTarget {
  const dir = tempDir('spindle-bench-shm-', '/dev/shm');
  try {
    const loop = attachLoop(writtenAndSynced(join(dir.path, 'disk.img'), size));
    return {
      name: 'loop device over /dev/shm',
      path: loop.device,
      cleanup: () => {
        loop.detach();
        dir.cleanup();
      },
    };
  } catch (err) {
    dir.cleanup();
    throw err;
  }
}

export interface Sample extends LoadgenResult {
  /** Backend process CPU (user + system, all threads) during this run. */
  cpuSec: number;
  cpuSecPerGiB: number;
  cpuUsPerIo: number;
}

/** One loadgen run against a running server, with the server's CPU time around it. */
export async function measure(server: DiskServer, o: LoadgenOptions): Promise<Sample> {
  const before = cpuSeconds(server.pid);
  const r = await runLoadgen(o);
  const cpuSec = cpuSeconds(server.pid) - before;
  return { ...r, cpuSec, cpuSecPerGiB: cpuSec / (r.bytes / 2 ** 30), cpuUsPerIo: (cpuSec * 1e6) / r.ops };
}

/** Starts a server, hands it to `fn`, always stops it; returns fn's result and the server's exit output. */
export async function withServer<T>(
  factory: DiskServerFactory,
  o: DiskServerOptions,
  fn: (s: DiskServer) => Promise<T>,
): Promise<{ value: T; exitOutput: string }> {
  const server = await factory(o);
  let value: T;
  try {
    value = await fn(server);
  } catch (err) {
    await server.stop().catch(() => undefined);
    throw err;
  }
  const { output } = await server.stop();
  return { value, exitOutput: output };
}
