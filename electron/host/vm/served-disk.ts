// Spindle's own disk server (electron/dataplane/iothread's DiskServer: one worker_thread per disk) seen
// through the VM manager's narrow DiskHost interface: its events become log lines for the UI, its
// shared counters become the sampler's cumulative snapshot, and its CPU adds up the threads that
// serve the disk.
import { EventEmitter } from 'node:events';
import { DiskServer, type DiskEvent, type DiskSpec, type ModeChange, type RetryOutcome, type SpaceStatus } from '../disks/disk-server.js';
import { formatSize } from '../../shared/size.js';
import type { CountersSnapshot } from '../../dataplane/block/stats.js';
import { DIRECTIONS } from '../../dataplane/block/stats.js';
import { DiskFaultWatch } from '../disks/fault-watch.js';
import { IoUringWorkerCpu, threadCpuSeconds } from '../proc/thread-cpu.js';
import type { DiskCountersSnapshot, DiskHost, DiskHostEvent, DiskServeSpec, SpaceWait } from './disk-host.js';

const spaceWait = (s: SpaceStatus): SpaceWait => ({ parkedRequests: s.parked, parkedBytes: s.parkedBytes, freeBytes: s.freeBytes, missingBytes: s.missingBytes });

/** "3 writes (3 MiB) wait for 2.5 MiB more free space": what parked writes wait for, in words. */
export function describeSpaceWait(s: SpaceWait): string {
  const n = s.parkedRequests;
  const writes = `${n} write${n === 1 ? '' : 's'}${s.parkedBytes > 0 ? ` (${formatSize(s.parkedBytes)})` : ''} wait${n === 1 ? 's' : ''}`;
  if (s.missingBytes === null) return `${writes} for space`;
  return s.missingBytes > 0 ? `${writes} for ${formatSize(s.missingBytes)} more free space` : `${writes} to be retried (${formatSize(s.freeBytes ?? 0)} free)`;
}

/** A disk-server event as a line for the log/UI (null: not worth one). `path`: the disk's image or device. */
export function describeDiskEvent(e: DiskEvent, path = 'the disk image'): DiskHostEvent | null {
  switch (e.kind) {
    case 'log':
      return { level: 'info', message: e.line };
    case 'connected':
      return { level: 'info', message: `QEMU connected${e.pid ? ` (pid ${e.pid})` : ''}.` };
    case 'disconnected':
      return { level: 'info', message: `QEMU disconnected${e.reason ? `: ${e.reason}` : '.'}` };
    case 'broken':
      return { level: 'error', message: `The guest sent a malformed request on queue ${e.queue}; the queue stopped: ${e.reason}`, broken: true };
    case 'nowait':
      return { level: e.enabled ? 'info' : 'warning', message: `RWF_NOWAIT ${e.enabled ? 'on' : 'off'} for ${e.direction}s: ${e.reason}` };
    case 'modes':
      return { level: 'info', message: `Now serving with aio '${e.aio}', cache '${e.cache}', nowait '${e.nowait}'.` };
    case 'resubmitted':
      return { level: 'info', message: `Resubmitted ${e.count} request(s) that were in flight when the disk server restarted (queue ${e.queue}).` };
    case 'restarting':
      return { level: 'warning', message: `The disk's I/O thread died (${e.reason}); restarting it (attempt ${e.attempt}).` };
    case 'restarted':
      // Writes it held for lack of space are QEMU's to resubmit from its inflight area now, once
      // the guest runs: a VM paused for them goes on (and pauses again if they still do not fit).
      return { level: 'info', message: `The disk's I/O thread is back (restarts so far: ${e.restarts}); QEMU reconnects by itself.`, spaceRecovered: true };
    case 'failed':
      return { level: 'error', message: `The disk's I/O thread stopped: ${e.reason}`, broken: true };
    case 'no-space': {
      const space = spaceWait(e);
      const message = e.retried
        ? `Retried the parked writes on ${path}: its filesystem is still full; ${describeSpaceWait(space)}.`
        : `The filesystem holding ${path} is full: ${describeSpaceWait(space)}. They are retried as space is freed.`;
      return { level: 'warning', message, noSpace: true, space };
    }
    case 'space-wait':
      return { level: 'info', message: '', space: spaceWait(e), quiet: true };
    case 'space-recovered': {
      const n = e.completed;
      const message = e.dropped > 0
        ? `${e.dropped} write${e.dropped === 1 ? '' : 's'} parked for lack of space on ${path} went with the guest's driver (it reset or disconnected); ${n} completed.`
        : `Space was freed on the filesystem holding ${path}: ${n} parked write${n === 1 ? '' : 's'} completed after ${Math.round(e.waitedMs / 1000)} s.`;
      return { level: 'info', message, spaceRecovered: true };
    }
  }
}

/** The sampler's view of the engine's counters (read and write latencies pooled). */
export function toDiskCounters(c: CountersSnapshot, cpuSec: number): DiskCountersSnapshot {
  return {
    readOps: c.read.ops,
    writeOps: c.write.ops,
    readBytes: c.read.bytes,
    writeBytes: c.write.bytes,
    inFlight: c.inFlight,
    cpuSec,
    latencyLog2Us: c.read.latencyHistogram.map((v, i) => v + (c.write.latencyHistogram[i] ?? 0)),
    errors: DIRECTIONS.reduce((a, k) => a + c[k].errors, 0),
    nowaitFallbacks: c.nowait.readFallbacks + c.nowait.writeFallbacks,
    submitStallLog2Us: c.submit.histogram,
    submitStallMaxUs: c.submit.maxNs / 1000,
  };
}

export class ServedDisk extends EventEmitter implements DiskHost {
  private readonly uringCpu: IoUringWorkerCpu | null;
  /** Last io_uring worker total: kept, not rescanned, while another engine serves (the total must not drop). */
  private uringSec = 0;
  /** Host faults under the disk (file deleted or replaced, loop detached, I/O errors) as error lines. */
  private readonly faults: DiskFaultWatch;

  constructor(readonly server: DiskServer, opts: { faultCheckMs?: number } = {}) {
    super();
    this.faults = new DiskFaultWatch(server, opts.faultCheckMs);
    this.faults.on('fault', (f) => this.emit('event', { level: 'error', message: f.reason } satisfies DiskHostEvent));
    this.faults.start();
    this.uringCpu = server.threadTid !== null ? new IoUringWorkerCpu(server.threadTid) : null;
    server.on('event', (e) => {
      const line = describeDiskEvent(e, server.spec.path);
      if (line) this.emit('event', line);
    });
  }

  get sizeBytes(): number {
    return this.server.sizeBytes;
  }

  get modes(): Required<ModeChange> {
    return this.server.currentModes;
  }

  reconfigure(change: ModeChange): Promise<void> {
    return this.server.reconfigure(change);
  }

  /**
   * CPU: the IOThread's whole CPU time (virtio-blk, vhost-user and the engine's submit/reap, so
   * the counters' own loop time is already in it) + the thread pool's workers (counted per task
   * by the engine) + the io_uring workers the kernel runs for this thread.
   */
  stats(): DiskCountersSnapshot {
    const c = this.server.stats();
    const tid = this.server.threadTid;
    const thread = tid !== null ? threadCpuSeconds(tid) : null;
    const own = thread ?? c.cpu.loopNs / 1e9;
    if (this.uringCpu && this.server.currentModes.aio === 'io_uring') this.uringSec = this.uringCpu.seconds();
    return toDiskCounters(c, own + c.cpu.poolNs / 1e9 + this.uringSec);
  }

  expectPeer(pid: number): Promise<void> {
    return this.server.expectPeer(pid);
  }

  retryParked(): Promise<RetryOutcome> {
    return this.server.retryParked();
  }

  stop(): Promise<void> {
    this.faults.stop();
    return this.server.stop();
  }
}

export async function servedDiskFactory(spec: DiskServeSpec): Promise<ServedDisk> {
  const diskSpec: DiskSpec = { ...spec };
  return new ServedDisk(await DiskServer.start(diskSpec));
}
