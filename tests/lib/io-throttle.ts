// A cgroup that throttles one block device's I/O for the processes put into it: cgroup v2's
// `io.max` where the io controller is enabled on the unified hierarchy, else cgroup v1's
// `blkio.throttle.*_device` (the v1 equivalent). Threads join a cgroup with their process only
// when they are created after the move, so the throttled work runs in a child process that enters
// the cgroup before it starts (`spawnArgs`). `remove()` after the children have exited.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

/** Read and write limits, each direction: I/Os per second and bytes per second. */
export interface IoLimit {
  iops: number;
  bytesPerSec: number;
}

export interface ThrottleGroup {
  mechanism: 'cgroup v2 io.max' | 'cgroup v1 blkio.throttle';
  path: string;
  /** Limits `dev` (MAJ:MIN) for the group's processes; null lifts them. */
  set(dev: string, limit: IoLimit | null): void;
  /** The limit files as the kernel reports them (for the record). */
  settings(): string;
  /** Read and write I/Os of the group's processes on `dev` so far, as the throttle counted them. */
  serviced(dev: string): { reads: number; writes: number };
  /** `spawn(...spawnArgs(cmd, args))`: a shell that moves itself into the group, then execs `cmd`. */
  spawnArgs(cmd: string, args: string[]): [string, string[]];
  remove(): void;
}

const V2_ROOT = '/sys/fs/cgroup';
const V1_ROOT = '/sys/fs/cgroup/blkio';

/** MAJ:MIN of a block device such as /dev/loop5 (from sysfs). */
export const blockDevNumber = (device: string): string => readFileSync(`/sys/block/${basename(device)}/dev`, 'utf8').trim();

/** Which mechanism this machine offers, or why none. */
export function throttleMechanism(): ThrottleGroup['mechanism'] | string {
  const controllers = join(V2_ROOT, 'cgroup.controllers');
  if (existsSync(controllers) && readFileSync(controllers, 'utf8').split(/\s+/).includes('io')) return 'cgroup v2 io.max';
  if (existsSync(join(V1_ROOT, 'blkio.throttle.write_iops_device'))) return 'cgroup v1 blkio.throttle';
  return `no I/O throttle: ${controllers} does not list io and ${V1_ROOT} has no blkio.throttle files`;
}

export function createThrottleGroup(name: string): ThrottleGroup {
  const mechanism = throttleMechanism();
  if (mechanism !== 'cgroup v2 io.max' && mechanism !== 'cgroup v1 blkio.throttle') throw new Error(mechanism);
  const v2 = mechanism === 'cgroup v2 io.max';
  if (v2) {
    const subtree = join(V2_ROOT, 'cgroup.subtree_control');
    if (!readFileSync(subtree, 'utf8').split(/\s+/).includes('io')) writeFileSync(subtree, '+io');
  }
  const path = join(v2 ? V2_ROOT : V1_ROOT, name);
  mkdirSync(path);
  const write = (file: string, line: string): void => writeFileSync(join(path, file), line);
  const V1_FILES = ['read_iops_device', 'write_iops_device', 'read_bps_device', 'write_bps_device'].map((f) => `blkio.throttle.${f}`);
  return {
    mechanism,
    path,
    set(dev, limit) {
      if (v2) {
        const [iops, bps] = limit ? [String(limit.iops), String(limit.bytesPerSec)] : ['max', 'max'];
        write('io.max', `${dev} rbps=${bps} wbps=${bps} riops=${iops} wiops=${iops}`);
      } else {
        // v1: a limit of 0 removes the device's rule.
        const values = limit ? [limit.iops, limit.iops, limit.bytesPerSec, limit.bytesPerSec] : [0, 0, 0, 0];
        V1_FILES.forEach((f, i) => write(f, `${dev} ${values[i]}`));
      }
    },
    settings() {
      const files = v2 ? ['io.max'] : V1_FILES;
      return files
        .map((f) => {
          const text = readFileSync(join(path, f), 'utf8').trim();
          return `${f}: ${text || '(none)'}`;
        })
        .join('; ');
    },
    serviced(dev) {
      if (v2) {
        const line = readFileSync(join(path, 'io.stat'), 'utf8')
          .split('\n')
          .find((l) => l.startsWith(`${dev} `));
        const field = (k: string): number => Number(line?.match(new RegExp(`\\b${k}=(\\d+)`))?.[1] ?? 0);
        return { reads: field('rios'), writes: field('wios') };
      }
      const lines = readFileSync(join(path, 'blkio.throttle.io_serviced'), 'utf8').split('\n');
      const field = (k: string): number => Number(lines.find((l) => l.startsWith(`${dev} ${k} `))?.split(' ')[2] ?? 0);
      return { reads: field('Read'), writes: field('Write') };
    },
    spawnArgs(cmd, args) {
      return ['/bin/sh', ['-c', `echo $$ > '${join(path, 'cgroup.procs')}' && exec "$0" "$@"`, cmd, ...args]];
    },
    remove() {
      try {
        rmdirSync(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    },
  };
}
