// "Disk server factories": how a guest scenario gets a vhost-user-blk backend for a file or
// device. The same scenarios run against qemu-storage-daemon (the peer) and `spindle export`.
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NowaitMode } from '../../electron/shared/modes.js';
import { CACHE_SEMANTICS } from '../../electron/shared/modes.js';
import { killOnExit, stopChild } from '../lib/proc.js';
import { startQsd, type QsdOptions } from '../lib/qsd.js';

/** What qemu-storage-daemon takes (path, socket, aio, cache, readOnly, queues, format: `spindle export --format`), plus Spindle's extras. */
export interface DiskServerOptions extends QsdOptions {
  serial?: string;
  /** `spindle export --nowait`; qemu-storage-daemon has no such option and refuses it. */
  nowait?: NowaitMode;
  /** `spindle export` only: its IOThreads run from the test entry (tests/lib/test-io-thread.ts). */
  testIoThread?: boolean;
  /** `spindle export` only: another checkout's bin/spindle.js (a benchmark's baseline). */
  bin?: string;
}

export interface DiskServer {
  pid: number;
  /** What the guest should read in /sys/block/vdX/serial, or null when this server cannot set one. */
  serial: string | null;
  /** Whether the guest should see a volatile write cache, or null when this server does not say. */
  writeCache: boolean | null;
  /** Stops the server; resolves with what it printed on exit (spindle export's `stats {json}` line lives there). */
  stop(): Promise<{ code: number | null; output: string }>;
  /** What it has printed so far (spindle export only). */
  output?(): string;
}

export type DiskServerFactory = (opts: DiskServerOptions) => Promise<DiskServer>;

/**
 * qemu-storage-daemon 7.2: its vhost-user-blk export always answers GET_ID with the same
 * string and always reports the write cache off (config `wce` 0), whatever the cache mode.
 */
export const qsdServer: DiskServerFactory = async (o) => {
  if (o.nowait && o.nowait !== 'off') throw new Error('qemu-storage-daemon has no RWF_NOWAIT mode');
  const qsd = await startQsd(o);
  return {
    pid: qsd.pid,
    serial: qsd.serial,
    writeCache: null,
    stop: async () => ({ code: await qsd.stop(), output: '' }),
  };
};

const here = dirname(fileURLToPath(import.meta.url));
/** bin/spindle.js of this checkout, from tests/guest or dist/tests/guest. */
export const spindleBin = (): string => {
  const up = here.includes(`${join('dist', 'tests')}`) ? ['..', '..', '..'] : ['..', '..'];
  return resolve(here, ...up, 'bin', 'spindle.js');
};

/** `spindle export` in the foreground; ready once it prints `ready SOCK`. */
export const spindleExportServer: DiskServerFactory = async (o) => {
  const args = [o.bin ?? spindleBin(), 'export', o.path, '--socket', o.socket, '--aio', o.aio, '--cache', o.cache];
  if (o.queues) args.push('--queues', String(o.queues));
  if (o.readOnly) args.push('--read-only');
  if (o.serial) args.push('--serial', o.serial);
  if (o.nowait) args.push('--nowait', o.nowait);
  if (o.format) args.push('--format', o.format);
  if (o.testIoThread) args.unshift('--import', new URL('../lib/use-test-io-thread.js', import.meta.url).href);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  let output = '';
  const ready = new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`spindle export did not print 'ready' within 20 s:\n${output}`)), 20_000);
    const onData = (d: Buffer): void => {
      output += d.toString();
      if (output.split('\n').some((l) => l.trim() === `ready ${o.socket}`)) {
        clearTimeout(timer);
        res();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      rej(new Error(`spindle export exited (${code ?? sig}) before ready:\n${output}`));
    });
  });
  try {
    await ready;
  } catch (err) {
    await stopChild(child, 2000);
    throw err;
  }
  return {
    pid: child.pid!,
    serial: o.serial ?? null,
    writeCache: CACHE_SEMANTICS[o.cache].writeCache,
    stop: async () => ({ code: await stopChild(child), output }),
    output: () => output,
  };
};

/** The counters `spindle export` prints on exit as one line `stats {json}`, or null when absent. */
export function parseExportStats(output: string): Record<string, unknown> | null {
  const line = output
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('stats {'));
  if (!line) return null;
  try {
    return JSON.parse(line.slice('stats '.length)) as Record<string, unknown>;
  } catch {
    return null;
  }
}
