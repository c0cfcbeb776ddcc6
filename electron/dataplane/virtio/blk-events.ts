// What a VirtioBlkDevice is built with and the events it raises about space (ENOSPC 'stop').
import type { EnospcPolicy } from '../../shared/modes.js';

export interface VirtioBlkOptions {
  /** Request queues offered (default: one per host CPU). */
  numQueues?: number;
  /** Serial returned by GET_ID (at most 20 bytes of UTF-8 are sent). */
  serial?: string;
  /** Most data segments per request (config seg_max). QEMU's vhost-user-blk rings hold 128. */
  segMax?: number;
  /** Largest single data segment (config size_max). */
  sizeMax?: number;
  /** What a request failing with ENOSPC does (QEMU's werror): 'stop' (default) parks it and raises
   *  onNoSpace, 'report' completes it with IOERR. */
  enospc?: EnospcPolicy;
  /** The disk's image or device path, for the sentences this device says. */
  diskPath?: string;
  /** Counts, per BlockOp, the requests completed to the guest with IOERR because the block layer
   *  failed them (parked ones are not failed). May be a view of shared memory read by another thread. */
  failureCounts?: Float64Array;
}

/** Requests are parked because the storage is full: the VM should pause until space is freed. */
export interface NoSpaceEvent {
  /** Requests parked now (more may follow until the VM is paused). */
  parked: number;
  /** The bytes they write. */
  parkedBytes: number;
  /** False for the first request parked since space last sufficed; true when a retry met ENOSPC again. */
  retried: boolean;
  sentence: string;
}

/** No parked request is left: they were written, or dropped with the driver that sent them. */
export interface SpaceRecoveredEvent {
  /** Parked requests written since the first was parked. */
  completed: number;
  /** Parked requests dropped unwritten because their driver went away or reset the ring (a
   *  reconnecting frontend resubmits them from its inflight area). */
  dropped: number;
  /** Since the first was parked, ms. */
  waitedMs: number;
}

/** What retryParked() did: requests submitted again, and how many still wait for space afterwards. */
export interface RetryOutcome {
  retried: number;
  parked: number;
}
