// What the qcow2 driver's request paths share: a guest request as the driver tracks it, the
// backing image, and what the read, write and zero/discard paths (read.ts, write.ts, allocate.ts,
// zero.ts) see of the driver (driver.ts builds it).
import type { BlockDevice, BlockOp } from '../../block/types.js';
import type { AioMode, CacheMode, NowaitMode } from '../../../shared/modes.js';
import type { Lower } from './lower.js';
import type { Qcow2Image } from './image.js';
import type { ClusterLocks } from './cluster-locks.js';
import type { Segments } from './segments.js';

export type ModeChange = { aio?: AioMode; cache?: CacheMode; nowait?: NowaitMode };

/** A backing image: any BlockDevice (raw BlockBackend or another Qcow2Device), read-only. */
export interface Backing {
  dev: BlockDevice & { reconfigure?(change: ModeChange): Promise<void> };
  io: Lower;
  sizeBytes: number;
  path: string;
}

/** A guest request: done when its last part is (`pending` parts left), with the first error. */
export interface Req {
  tag: number;
  op: BlockOp;
  offset: number;
  length: number;
  flags: number;
  segs: Segments;
  pending: number;
  result: number;
}

export const EIO = -5;
export const EROFS = -30;

/** The driver as its request paths see it. */
export interface DriverCtx {
  readonly path: string;
  /** The disk's size now (resize grows it). */
  sizeBytes(): number;
  /** Cluster size in bytes. */
  readonly cs: number;
  readonly image: Qcow2Image;
  /** The image file below. */
  readonly io: Lower;
  readonly backing: Backing | null;
  /** Guest memory by registered buffer id (zeros and decompressed bytes are filled in here). */
  readonly buffers: Map<number, Uint8Array>;
  readonly clusterLocks: ClusterLocks;
  /** Emits a 'log' event on the device. */
  log(message: string): void;
  /** One part of `req` done with `res` (negative: -errno); the request completes with its last. */
  part(req: Req, res: number): void;
  /** part() as a Lower callback: `done(res, req)`, one function for every request. */
  partDone(res: number, req?: unknown): void;
  /** Adds one to a format counter (block/stats.ts FORMAT_SLOT). */
  count(slot: number): void;
  /** After an allocating change: durable now with the write cache off, else metadata trimmed. */
  afterAllocation(): Promise<void>;
}
