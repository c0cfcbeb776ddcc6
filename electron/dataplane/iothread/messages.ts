// What the main thread and a disk's IOThread (worker_thread) say to each other. Counters are not
// here: they cross threads through the DiskCounters SharedArrayBuffer, never one message per I/O.
import type { AioMode, CacheMode, NowaitMode } from '../../shared/modes.js';
import type { SpindleErrorCode } from '../../shared/errors.js';
import type { EnospcPolicy } from '../../shared/modes.js';
import type { DiskFormat } from '../../shared/model.js';
import type { IoLimits } from '../../shared/limits.js';
import type { RetryOutcome } from '../virtio/virtio-blk.js';
import type { SpaceStatus } from './space-watch.js';

export interface DiskSpec {
  /** Image file or host block device. */
  path: string;
  /** What the disk holds, as its owner recorded it; never re-probed. Absent: served raw, and refused
   *  when its header says it is another format (callers that predate the format field). */
  format?: DiskFormat;
  /** qcow2: bytes of L2 tables kept in memory (default: the whole disk, at most 32 MiB). */
  l2CacheBytes?: number;
  socketPath: string;
  aio: AioMode;
  cache: CacheMode;
  nowait: NowaitMode;
  readOnly: boolean;
  /** Request queues offered to the guest. */
  queues: number;
  /** GET_ID serial (at most 20 bytes are sent). */
  serial: string;
  /** Accept only this frontend process (SO_PEERCRED); any process of this user when absent. */
  peerPid?: number;
  /**
   * Accept no connection until DiskServer.expectPeer(pid) names the frontend (QEMU's pid is only
   * known once it is spawned, after its disks are listening); connections wait in the backlog.
   */
  awaitPeer?: boolean;
  /** A write failing with ENOSPC: 'stop' (default) parks it, raises a 'no-space' event and retries it
   *  once space is freed ('space-recovered' when all are written); 'report' gives the guest IOERR. */
  enospc?: EnospcPolicy;
  /** I/O limits (QEMU's throttle semantics, dataplane/block/throttle.ts); none when absent. */
  limits?: IoLimits;
}

export interface ModeChange {
  aio?: AioMode;
  cache?: CacheMode;
  nowait?: NowaitMode;
}

export type Command =
  | { id: number; op: 'pause' }
  | { id: number; op: 'resume' }
  | { id: number; op: 'reconfigure'; change: ModeChange }
  | { id: number; op: 'stop' }
  /** New I/O limits, applied at once to what is queued and what comes next. */
  | { id: number; op: 'limits'; limits: IoLimits }
  | { id: number; op: 'expect-peer'; pid: number }
  /** Grows the disk (BlockDevice.resize), raises the virtio capacity and tells the frontend. */
  | { id: number; op: 'resize'; sizeBytes: number }
  /** Retries the requests parked for lack of space now (enospc 'stop'); replies with a RetryOutcome
   *  once they have completed or parked again. */
  | { id: number; op: 'retry-parked' };

export interface WorkerData {
  spec: DiskSpec;
  counters: SharedArrayBuffer;
  /** FD_LEDGER_SLOTS [fd, inode] pairs: the fds a crashed worker would leave open, see fd-ledger.ts. */
  fdLedger: SharedArrayBuffer;
  /** FAILURE_SLOTS doubles: per BlockOp, requests the guest got back as failed (VirtioBlkOptions.failureCounts). */
  failures: SharedArrayBuffer;
}

/** One counter per BlockOp (read, write, flush, discard, write-zeroes). */
export const FAILURE_SLOTS = 5;

export interface SerializedError {
  code: SpindleErrorCode;
  message: string;
  errno?: string;
}

/** Something worth a line in the log or the UI. */
export type DiskEvent =
  | { kind: 'log'; line: string }
  | { kind: 'connected'; pid: number | null }
  | { kind: 'disconnected'; reason: string | null }
  | { kind: 'broken'; queue: number; reason: string }
  | { kind: 'nowait'; direction: 'read' | 'write'; enabled: boolean; reason: string }
  | { kind: 'modes'; aio: AioMode; cache: CacheMode; nowait: NowaitMode }
  /** The disk grew; `guestNotice`: why the connected guest could not be told now (a sentence), else absent. */
  | { kind: 'resized'; sizeBytes: number; guestNotice?: string }
  /** A new frontend connection found requests a previous server left in flight and resubmitted them. */
  | { kind: 'resubmitted'; queue: number; count: number }
  /** The disk's worker died unexpectedly and is being restarted on the same socket (QEMU reconnects). */
  | { kind: 'restarting'; reason: string; attempt: number }
  /** The restarted worker serves again; `restarts` counts every restart of this disk. */
  | { kind: 'restarted'; restarts: number }
  /** The disk's worker died for good (or could not be restarted); the reason is a sentence. Other disks are unaffected. */
  | { kind: 'failed'; reason: string }
  /** enospc 'stop': writes are parked because the filesystem is full (the VM should pause); raised
   *  for the first one, and again (`retried`) when a retry found no space either. */
  | ({ kind: 'no-space'; retried: boolean; sentence: string } & SpaceStatus)
  /** While writes are parked: the numbers changed (free space, writes parked). No line for the log. */
  | ({ kind: 'space-wait' } & SpaceStatus)
  /** No parked write is left: `completed` were written, `dropped` went with a driver that went away
   *  or reset its ring (a reconnecting frontend resubmits those itself). The VM may go on. */
  | { kind: 'space-recovered'; completed: number; dropped: number; waitedMs: number };

export type { RetryOutcome, SpaceStatus };

export type WorkerMessage =
  /** `tid`: the IOThread's kernel thread id (from /proc/thread-self), so the main thread can read its CPU time. */
  | { type: 'ready'; sizeBytes: number; kind: 'file' | 'block'; aio: AioMode; cache: CacheMode; nowait: NowaitMode; tid: number | null }
  | { type: 'start-failed'; error: SerializedError }
  | { type: 'reply'; id: number; error?: SerializedError; outcome?: RetryOutcome }
  | { type: 'event'; event: DiskEvent };
