// Drives `spindle loadgen` (a vhost-user frontend acting like a guest) against any vhost-user-blk
// backend and normalises what it reports.
import { spawn } from 'node:child_process';
import { spindleBin } from '../../guest/disk-server.js';
import { killOnExit, stopChild } from '../../lib/proc.js';

export type Rw = 'randread' | 'randwrite' | 'read' | 'write' | 'randrw';

export interface LoadgenOptions {
  socket: string;
  rw: Rw;
  /** Block size in bytes. */
  bs: number;
  iodepth: number;
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
  /** loadgen's own JSON, untouched, for the results file. */
  raw: unknown;
}

/** Finds the first numeric value whose key matches, depth-first. */
function pick(obj: unknown, key: RegExp): { key: string; value: number } | null {
  if (!obj || typeof obj !== 'object') return null;
  for (const [k, v] of Object.entries(obj)) if (key.test(k) && typeof v === 'number') return { key: k, value: v };
  for (const v of Object.values(obj)) {
    const found = pick(v, key);
    if (found) return found;
  }
  return null;
}

/** A latency value in µs whatever unit its key names (…Ns, …Us, …Ms; bare means µs). */
const latencyUs = (found: { key: string; value: number } | null): number => {
  if (!found) return NaN;
  if (/ns$/i.test(found.key)) return found.value / 1000;
  if (/ms$/i.test(found.key)) return found.value * 1000;
  return found.value;
};

export function normaliseLoadgen(raw: unknown, runtimeSec: number, bs: number): LoadgenResult {
  const ops = pick(raw, /^(ops|ios|requests|completed)$/i)?.value ?? NaN;
  const bytes = pick(raw, /^bytes$/i)?.value ?? ops * bs;
  const iops = pick(raw, /^iops$/i)?.value ?? ops / runtimeSec;
  const mb = pick(raw, /^(mbPerSec|mbps|mb_s|MBps|bandwidthMBps|mibPerSec)$/i)?.value ?? bytes / runtimeSec / 1e6;
  return {
    iops,
    mbPerSec: mb,
    p50Us: latencyUs(pick(raw, /p50/i)),
    p99Us: latencyUs(pick(raw, /p99/i)),
    ops,
    bytes,
    errors: pick(raw, /^errors$/i)?.value ?? 0,
    raw,
  };
}

/** Runs loadgen once with `--json`; rejects with its output when it fails or reports errors. */
export async function runLoadgen(o: LoadgenOptions): Promise<LoadgenResult> {
  const args = [spindleBin(), 'loadgen', '--socket', o.socket, '--rw', o.rw, '--bs', String(o.bs), '--iodepth', String(o.iodepth),
    '--runtime', String(o.runtimeSec), '--json'];
  if (o.queues) args.push('--queues', String(o.queues));
  if (o.size) args.push('--size', String(o.size));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const timer = setTimeout(() => { void stopChild(child, 2000); }, (o.runtimeSec + 60) * 1000);
  const code = await new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
  clearTimeout(timer);
  const jsonLine = stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('{')).at(-1);
  if (code !== 0 || !jsonLine) {
    throw new Error(`spindle loadgen ${args.slice(2).join(' ')} failed (exit ${code}):\n${stdout}${stderr}`);
  }
  const result = normaliseLoadgen(JSON.parse(jsonLine), o.runtimeSec, o.bs);
  if (result.errors > 0) throw new Error(`spindle loadgen reported ${result.errors} I/O errors:\n${jsonLine}`);
  return result;
}
