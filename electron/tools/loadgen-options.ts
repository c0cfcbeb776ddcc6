// What a load generator run is asked to do (LoadgenOptions: the workload, the backend's socket,
// verify, limits) and what it reports (LoadgenResult), with the limits the CLI checks against.
import type { RwMode, Workload } from './workload.js';

export const MAX_IODEPTH = 256;
export const MAX_RING = 1024; // libvhost-user backends (qemu-storage-daemon) accept no larger rings
/** Default --timeout: how long the backend may take to answer a handshake message, or to complete
 *  anything while requests are in flight, before loadgen gives up on it. */
export const DEFAULT_TIMEOUT_SEC = 30;

export interface LoadgenOptions extends Workload {
  socket: string;
  queues: number;
  runtimeSec: number;
  /** Bytes of the disk to use from offset 0 (0: all of it). */
  size: number;
  verify: boolean;
  /** Only the read-back pass of --verify: checks the pattern an earlier --verify run (same seed, bs, region) wrote. */
  verifyOnly: boolean;
  /** Required here: the command always passes it (Workload's default, 50, is the CLI's). */
  rwmixread: number;
  seed: number;
  /** Stop after this many passes over the region (a fixed number of bytes, like dd count=; random
   *  modes: as many requests as that many passes make); runtimeSec still caps it. */
  passes?: number;
  /** Stops issuing new requests; the run ends once those in flight complete (the result covers what was done). */
  signal?: AbortSignal;
  /** Seconds the backend may take to answer each vhost-user message, to complete anything while
   *  requests are in flight, and to finish those in flight after the runtime (default 30). */
  timeoutSec?: number;
}

export interface LoadgenResult {
  rw: RwMode;
  bs: number;
  iodepth: number;
  queues: number;
  sizeBytes: number;
  runtimeSec: number;
  ios: number;
  reads: number;
  writes: number;
  errors: number;
  iops: number;
  /** Megabytes (10^6 bytes) per second. */
  mbps: number;
  latencyUs: { p50: number; p99: number; mean: number; max: number };
  /** This frontend's own CPU (user + system, all threads) over the run: near runtimeSec means the
   * driver, not the backend, set the pace. */
  driverCpuSec: number;
  verify: { blocks: number; mismatches: number; firstMismatchOffset: number | null } | null;
}
