// What the VM manager needs from a disk's server, kept narrow so the real one (electron/iothread's
// DiskServer, one worker_thread per disk) and the qemu-storage-daemon peer both fit it.
import type { AioMode, CacheMode, NowaitMode } from '../block/modes.js';

export interface DiskServeSpec {
  path: string;
  /** The vhost-user unix socket QEMU connects to. */
  socketPath: string;
  aio: AioMode;
  cache: CacheMode;
  nowait: NowaitMode;
  readOnly: boolean;
  queues: number;
  serial: string;
}

/** Cumulative counters since the server started (the sampler takes differences). */
export interface DiskCountersSnapshot {
  readOps: number;
  writeOps: number;
  readBytes: number;
  writeBytes: number;
  /** Requests in flight right now. */
  inFlight: number;
  /** CPU seconds spent by the disk's server thread (CLOCK_THREAD_CPUTIME_ID), if known. */
  cpuSec?: number;
  /** Completion latency histogram, cumulative: bucket i counts latencies in [2^i, 2^(i+1)) µs. */
  latencyLog2Us?: ArrayLike<number>;
}

export interface DiskHostEvent {
  level: 'info' | 'warning' | 'error';
  message: string;
  /** The guest sent a malformed request and the queue stopped (virtio NEEDS_RESET). */
  broken?: boolean;
}

export interface DiskHost {
  /** Switch aio/cache/nowait on a live disk: drain, reopen, swap engine, resume. */
  reconfigure(change: { aio?: AioMode; cache?: CacheMode; nowait?: NowaitMode }): Promise<void>;
  stats(): DiskCountersSnapshot | Promise<DiskCountersSnapshot>;
  on(event: 'event', listener: (e: DiskHostEvent) => void): unknown;
  /** Drains in-flight requests, closes the file and the socket. */
  stop(): Promise<void>;
}

export type DiskHostFactory = (spec: DiskServeSpec) => Promise<DiskHost>;
