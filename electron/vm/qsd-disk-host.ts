// A DiskHost backed by qemu-storage-daemon (Debian's qemu-utils) exporting the same file as
// vhost-user-blk with the same aio and cache settings. It is the peer Spindle's own disk servers
// are compared with, and lets the VM manager run real disks where Spindle's data plane is absent.
// Live aio/cache switches are Spindle's feature and are refused here.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync, rmSync } from 'node:fs';
import { EventEmitter } from 'node:events';
import { CACHE_SEMANTICS } from '../block/modes.js';
import { SpindleError } from '../errors.js';
import { QmpClient } from './qmp.js';
import type { DiskCountersSnapshot, DiskHost, DiskServeSpec } from './disk-host.js';

export class QsdDiskHost extends EventEmitter implements DiskHost {
  private stopped = false;
  private constructor(private readonly proc: ChildProcess, private readonly qmp: QmpClient, private readonly spec: DiskServeSpec) {
    super();
    proc.on('exit', (code, signal) => {
      if (!this.stopped) this.emit('event', { level: 'error', message: `qemu-storage-daemon for ${spec.path} exited (${signal ?? code}).` });
    });
  }

  static async start(spec: DiskServeSpec, binary = 'qemu-storage-daemon'): Promise<QsdDiskHost> {
    const sem = CACHE_SEMANTICS[spec.cache];
    const isBlock = statSync(spec.path).isBlockDevice();
    const qmpPath = `${spec.socketPath}.qsd-qmp`;
    rmSync(qmpPath, { force: true });
    rmSync(spec.socketPath, { force: true });
    const args = [
      '--blockdev', JSON.stringify({
        driver: isBlock ? 'host_device' : 'file', 'node-name': 'disk', filename: spec.path, aio: spec.aio,
        cache: { direct: sem.direct, 'no-flush': sem.flush === 'nothing' }, 'read-only': spec.readOnly,
      }),
      '--export', JSON.stringify({
        type: 'vhost-user-blk', id: 'exp', 'node-name': 'disk', writable: !spec.readOnly, writethrough: !sem.writeCache,
        'num-queues': spec.queues, addr: { type: 'unix', path: spec.socketPath },
      }),
      '--chardev', `socket,id=qmp,path=${qmpPath.replace(/,/g, ',,')},server=on,wait=off`,
      '--monitor', 'chardev=qmp',
    ];
    const proc = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.once('error', () => {});
    for (let i = 0; i < 200 && !(existsSync(qmpPath) && existsSync(spec.socketPath)); i++) {
      const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 25))]);
      if (done) throw new SpindleError('IO_ERROR', `qemu-storage-daemon could not serve ${spec.path}: ${stderr.trim() || 'it exited'}.`);
    }
    const qmp = await QmpClient.connect(qmpPath);
    return new QsdDiskHost(proc, qmp, spec);
  }

  async reconfigure(): Promise<void> {
    throw new SpindleError('UNSUPPORTED_MODE', `The disk ${this.spec.path} is served by qemu-storage-daemon, which cannot switch aio or cache mode live.`);
  }

  async stats(): Promise<DiskCountersSnapshot> {
    const all = await this.qmp.execute<Array<{ 'node-name'?: string; stats: Record<string, number> }>>('query-blockstats', { 'query-nodes': true });
    const s = all.find((b) => b['node-name'] === 'disk')?.stats ?? {};
    return { readOps: s.rd_operations ?? 0, writeOps: s.wr_operations ?? 0, readBytes: s.rd_bytes ?? 0, writeBytes: s.wr_bytes ?? 0, inFlight: 0 };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const exited = new Promise<void>((resolve) => (this.proc.exitCode !== null || this.proc.signalCode !== null ? resolve() : this.proc.once('exit', () => resolve())));
    try {
      await this.qmp.execute('quit');
    } catch { /* already gone */ }
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    this.qmp.close();
  }
}

export const qsdDiskHostFactory = (spec: DiskServeSpec) => QsdDiskHost.start(spec);
