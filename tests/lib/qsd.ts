// The peer: qemu-storage-daemon exporting a file or block device as vhost-user-blk with the same
// aio and cache settings Spindle uses, so tests and benchmarks compare like with like.
import { spawn } from 'node:child_process';
import { existsSync, rmSync, statSync } from 'node:fs';
import type { AioMode, CacheMode } from '../../electron/shared/modes.js';
import { CACHE_SEMANTICS } from '../../electron/shared/modes.js';
import { cpuSeconds, killOnExit, stopChild, waitForPath } from './proc.js';

export { cpuSeconds };

export interface QsdOptions {
  path: string;
  socket: string;
  aio: AioMode;
  cache: CacheMode;
  readOnly?: boolean;
  queues?: number;
  /** The image format: raw (the file node is exported) or qcow2 (QEMU's qcow2 driver over the file node). */
  format?: 'raw' | 'qcow2';
}

export interface Qsd {
  pid: number;
  /** The serial a guest reads in /sys/block/vdX/serial: QEMU's vhost-user-blk export has a fixed one. */
  serial: string;
  /** SIGTERM, then SIGKILL after a grace period; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** qemu-storage-daemon's GET_ID answer (block/export/virtio-blk-handler.c). */
export const QSD_SERIAL = 'vhost_user_blk';

/**
 * Cache mode → QEMU options, as file-posix applies them: O_DIRECT is `cache.direct`; QEMU
 * has no O_DSYNC switch, its writethrough is "flush after every write" (the export's
 * `writethrough=on`), which is what O_DSYNC amounts to; `unsafe` ignores flushes (`cache.no-flush`).
 */
export function qsdArgs(o: QsdOptions): string[] {
  const sem = CACHE_SEMANTICS[o.cache];
  const driver = statSync(o.path).isBlockDevice() ? 'host_device' : 'file';
  const common = [
    `cache.direct=${sem.direct ? 'on' : 'off'}`,
    `cache.no-flush=${sem.flush === 'nothing' ? 'on' : 'off'}`,
    'discard=unmap',
    `read-only=${o.readOnly ? 'on' : 'off'}`,
  ];
  const qcow2 = o.format === 'qcow2';
  const blockdev = [
    `driver=${driver}`,
    `node-name=${qcow2 ? 'file0' : 'disk0'}`,
    `filename=${o.path.replace(/,/g, ',,')}`,
    `aio=${o.aio}`,
    ...common,
  ];
  // qcow2: the format node over the file node, with the same cache settings (a -blockdev child
  // inherits nothing, so both nodes say them).
  const format = qcow2 ? ['--blockdev', ['driver=qcow2', 'node-name=disk0', 'file=file0', ...common].join(',')] : [];
  const exp = [
    'type=vhost-user-blk',
    'id=export0',
    'node-name=disk0',
    'addr.type=unix',
    `addr.path=${o.socket.replace(/,/g, ',,')}`,
    `writable=${o.readOnly ? 'off' : 'on'}`,
    `writethrough=${sem.dsync ? 'on' : 'off'}`,
    `num-queues=${o.queues ?? 1}`,
  ];
  return ['--blockdev', blockdev.join(','), ...format, '--export', exp.join(',')];
}

/** Starts qemu-storage-daemon and resolves once its socket exists. */
export async function startQsd(o: QsdOptions): Promise<Qsd> {
  if (!existsSync(o.path)) throw new Error(`qemu-storage-daemon: ${o.path} does not exist`);
  // A socket file left by a killed daemon would make the wait below succeed before this one listens.
  rmSync(o.socket, { force: true });
  const child = spawn('qemu-storage-daemon', qsdArgs(o), { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  let output = '';
  const collect = (d: Buffer): void => {
    output = (output + d.toString()).slice(-8192);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  try {
    await waitForPath(o.socket, {
      timeoutMs: 20_000,
      failed: () =>
        child.exitCode !== null || child.signalCode !== null
          ? `qemu-storage-daemon exited (${child.exitCode ?? child.signalCode}) before listening: ${output.trim()}`
          : null,
    });
  } catch (err) {
    await stopChild(child, 2000);
    throw err;
  }
  return { pid: child.pid!, serial: QSD_SERIAL, stop: () => stopChild(child) };
}
