// Drives `spindle loadgen` (a vhost-user frontend acting like a guest) against any vhost-user-blk
// backend and normalises what it reports.
import { spawn } from 'node:child_process';
import { spindleBin } from '../../guest/disk-server.js';
import { killOnExit, stopChild } from '../../lib/proc.js';
import type { Workload } from '../../../electron/tools/workload.js';

export interface LoadgenOptions extends Workload {
  socket: string;
  queues?: number;
  runtimeSec: number;
  /** Bytes of the disk to address (default: loadgen's, the whole disk). */
  size?: number;
}

export interface LoadgenResult {
  iops: number;
  mbPerSec: number;
  p50Us: number;
  p99Us: number;
  ops: number;
  bytes: number;
  errors: number;
  /** loadgen's own CPU over the run (near the run time: the driver set the pace). */
  driverCpuSec: number;
  /** loadgen's own JSON, untouched, for the results file. */
  raw: unknown;
}

/** The fields of `spindle loadgen --json` the benchmarks use (electron/cli/loadgen.ts LoadgenResult). */
interface LoadgenJson {
  ios: number;
  errors: number;
  iops: number;
  mbps: number;
  bs: number;
  latencyUs: { p50: number; p99: number };
  driverCpuSec: number;
}

export function normaliseLoadgen(raw: unknown): LoadgenResult {
  const j = raw as Partial<LoadgenJson>;
  const num = (v: unknown, what: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw new Error(`spindle loadgen --json has no numeric ${what}: ${JSON.stringify(raw)}`);
    return v;
  };
  const ops = num(j.ios, 'ios');
  return {
    iops: num(j.iops, 'iops'),
    mbPerSec: num(j.mbps, 'mbps'),
    p50Us: num(j.latencyUs?.p50, 'latencyUs.p50'),
    p99Us: num(j.latencyUs?.p99, 'latencyUs.p99'),
    ops,
    bytes: ops * num(j.bs, 'bs'),
    errors: num(j.errors, 'errors'),
    driverCpuSec: num(j.driverCpuSec, 'driverCpuSec'),
    raw,
  };
}

/** Runs loadgen once with `--json`; rejects with its output when it fails or reports errors. */
export async function runLoadgen(o: LoadgenOptions): Promise<LoadgenResult> {
  const args = [
    spindleBin(),
    'loadgen',
    '--socket',
    o.socket,
    '--rw',
    o.rw,
    '--bs',
    String(o.bs),
    '--iodepth',
    String(o.iodepth),
    '--runtime',
    String(o.runtimeSec),
    '--json',
  ];
  if (o.queues) args.push('--queues', String(o.queues));
  if (o.size) args.push('--size', String(o.size));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(
    () => {
      void stopChild(child, 2000);
    },
    (o.runtimeSec + 60) * 1000,
  );
  const [code, signal] = await new Promise<[number | null, string | null]>((res) => child.once('exit', (c, sig) => res([c, sig])));
  clearTimeout(timer);
  const jsonLine = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .at(-1);
  if (code !== 0 || !jsonLine) {
    throw new Error(
      `spindle loadgen ${args.slice(2).join(' ')} failed (${signal ? `signal ${signal}` : `exit ${code}`}): ${(stdout + stderr).trim() || 'no output'}`,
    );
  }
  const result = normaliseLoadgen(JSON.parse(jsonLine));
  if (result.errors > 0) throw new Error(`spindle loadgen reported ${result.errors} I/O errors:\n${jsonLine}`);
  return result;
}
