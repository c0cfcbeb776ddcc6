// Spindle's own disk server (electron/dataplane/iothread's DiskServer: one worker_thread per disk) seen
// through the VM manager's narrow DiskHost interface: its typed events pass on as they are (with
// host faults under the disk as 'fault' events), its shared counters become the sampler's cumulative snapshot, and its CPU adds up the threads that
// serve the disk.
import { EventEmitter } from 'node:events';
import { DiskServer, type DiskSpec, type ModeChange, type RetryOutcome } from '../disks/disk-server.js';
import type { CountersSnapshot } from '../../dataplane/block/stats.js';
import type { IoLimits } from '../../shared/limits.js';
import { DIRECTIONS } from '../../dataplane/block/stats.js';
import { DiskFaultWatch } from '../disks/fault-watch.js';
import { IoUringWorkerCpu, threadCpuSeconds } from '../proc/thread-cpu.js';
import type { DiskCountersSnapshot, DiskHost, DiskHostEvent, DiskServeSpec } from './disk-host.js';

export { describeDiskEvent, describeSpaceWait } from './disk-events.js';

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

  constructor(
    readonly server: DiskServer,
    opts: { faultCheckMs?: number } = {},
  ) {
    super();
    this.faults = new DiskFaultWatch(server, opts.faultCheckMs);
    this.faults.on('fault', (f) => this.emit('event', { kind: 'fault', reason: f.reason } satisfies DiskHostEvent));
    this.faults.start();
    this.uringCpu = server.threadTid !== null ? new IoUringWorkerCpu(server.threadTid) : null;
    server.on('event', (e) => this.emit('event', e satisfies DiskHostEvent));
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

  resize(sizeBytes: number): Promise<void> {
    return this.server.resize(sizeBytes);
  }

  setLimits(limits: IoLimits): Promise<void> {
    return this.server.setLimits(limits);
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

  detach(): Promise<void> {
    return this.server.detach();
  }

  reattach(): Promise<void> {
    return this.server.reattach();
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
