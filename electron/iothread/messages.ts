// What the main thread and a disk's IOThread (worker_thread) say to each other. Counters are not
// here: they cross threads through the DiskCounters SharedArrayBuffer, never one message per I/O.
import type { AioMode, CacheMode, NowaitMode } from '../block/modes.js';
import type { SpindleErrorCode } from '../errors.js';
import type { EnospcPolicy } from '../virtio/virtio-blk.js';

export interface DiskSpec {
  /** Image file or host block device. */
  path: string;
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
  /** A write failing with ENOSPC: 'stop' (default) parks it and raises a 'no-space' event, 'report' gives the guest IOERR. */
  enospc?: EnospcPolicy;
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
  | { id: number; op: 'expect-peer'; pid: number }
  /** Submits again the requests parked for lack of space (enospc 'stop'). */
  | { id: number; op: 'resume-parked' }
  /** Only honoured with SPINDLE_TEST_HOOKS=1: throws inside the worker's event loop. */
  | { id: number; op: 'crash-for-test' };

export interface WorkerData {
  spec: DiskSpec;
  counters: SharedArrayBuffer;
  /** FD_LEDGER_SLOTS [fd, inode] pairs: the fds a crashed worker would leave open, see fd-ledger.ts. */
  fdLedger: SharedArrayBuffer;
}

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
  /** A new frontend connection found requests a previous server left in flight and resubmitted them. */
  | { kind: 'resubmitted'; queue: number; count: number }
  /** The disk's worker died unexpectedly and is being restarted on the same socket (QEMU reconnects). */
  | { kind: 'restarting'; reason: string; attempt: number }
  /** The restarted worker serves again; `restarts` counts every restart of this disk. */
  | { kind: 'restarted'; restarts: number }
  /** The disk's worker died for good (or could not be restarted); the reason is a sentence. Other disks are unaffected. */
  | { kind: 'failed'; reason: string }
  /** enospc 'stop': requests are parked because the filesystem is full; the VM should pause until space is freed. */
  | { kind: 'no-space'; parked: number; sentence: string };

export type WorkerMessage =
  /** `tid`: the IOThread's kernel thread id (from /proc/thread-self), so the main thread can read its CPU time. */
  | { type: 'ready'; sizeBytes: number; kind: 'file' | 'block'; aio: AioMode; cache: CacheMode; nowait: NowaitMode; tid: number | null }
  | { type: 'start-failed'; error: SerializedError }
  | { type: 'reply'; id: number; error?: SerializedError }
  | { type: 'event'; event: DiskEvent };
