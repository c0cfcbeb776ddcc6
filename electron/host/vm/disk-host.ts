// What the VM manager needs from a disk's server, kept narrow: the real one is electron/dataplane/iothread's
// DiskServer (one worker_thread per disk) behind ./served-disk.ts; tests may script their own.
import type { DiskEvent, DiskSpec, ModeChange } from '../../dataplane/iothread/messages.js';
import type { IoLimits } from '../../shared/limits.js';

/** What a disk is served with: the IOThread's own spec (one definition for both layers). */
export type DiskServeSpec = DiskSpec;

/** Cumulative counters since the server started (the sampler takes differences). */
export interface DiskCountersSnapshot {
  readOps: number;
  writeOps: number;
  readBytes: number;
  writeBytes: number;
  /** Requests in flight right now. */
  inFlight: number;
  /** Backend CPU seconds: the disk's IOThread, its engine's pool workers and io_uring workers. */
  cpuSec?: number;
  /** Read and write completion latency, cumulative; bucket b counts [2^(b-1), 2^b) µs (as electron/dataplane/block/stats.ts). */
  latencyLog2Us?: ArrayLike<number>;
  /** Requests that completed with an error. */
  errors?: number;
  /** RWF_NOWAIT requests that bounced and were reissued through the thread pool. */
  nowaitFallbacks?: number;
  /** Time per io_submit / io_uring_submit call, cumulative, same buckets as latencyLog2Us. */
  submitStallLog2Us?: ArrayLike<number>;
  /** Longest single submit call since the server started, µs. */
  submitStallMaxUs?: number;
}

/** What a disk's parked writes wait for (enospc 'stop'). */
export interface SpaceWait {
  parkedRequests: number;
  parkedBytes: number;
  /** Free space an unprivileged user may use on the image's filesystem; null for a block device. */
  freeBytes: number | null;
  /** How much more free space the parked writes need at least; null when unknown. */
  missingBytes: number | null;
}

/** What a disk server tells: its own typed events (messages.ts), and faults the host finds under
 *  the disk (file deleted or replaced, loop detached, I/O errors). disk-events.ts reads them. */
export type DiskHostEvent = DiskEvent | { kind: 'fault'; reason: string };

export interface DiskHost {
  /** Size the server sees, bytes (when it knows). */
  readonly sizeBytes?: number;
  /** The modes it serves with right now (when it knows). */
  readonly modes?: Required<ModeChange>;
  /** Switch aio/cache/nowait on a live disk: drain, reopen, swap engine, resume. */
  reconfigure(change: ModeChange): Promise<void>;
  /** Grows the served disk and tells the guest (vhost-user config change); shrinking is refused. */
  resize?(sizeBytes: number): Promise<void>;
  stats(): DiskCountersSnapshot | Promise<DiskCountersSnapshot>;
  /** Changes the disk's I/O limits live (QEMU's throttle semantics); absent when the host cannot. */
  setLimits?(limits: IoLimits): Promise<void>;
  /** Names QEMU's pid: with spec.awaitPeer nothing is served before this, and only that process after. */
  expectPeer?(pid: number): Promise<void>;
  /** Retries the writes parked for lack of space now (enospc 'stop'); resolves once they are written
   *  or parked again, with how many still wait. */
  retryParked?(): Promise<{ retried: number; parked: number }>;
  /** Closes the image (no fd, no lock) after draining, the guest staying connected; reattach() serves it again. */
  detach?(): Promise<void>;
  reattach?(): Promise<void>;
  on(event: 'event', listener: (e: DiskHostEvent) => void): unknown;
  /** Drains in-flight requests, closes the file and the socket. */
  stop(): Promise<void>;
}

export type DiskHostFactory = (spec: DiskServeSpec) => Promise<DiskHost>;
