// Typed view of native/os: geometry, holes, fallocate, probes, OFD locks.
import { addon } from './addon.js';

export interface Geometry {
  kind: 'file' | 'block';
  sizeBytes: number;
  /** 0 for files: probe it with O_DIRECT. */
  logicalBlockSize: number;
  physicalBlockSize: number;
}

export const geometry: (fd: number) => Geometry = addon.geometry;

/** What SEEK_DATA/SEEK_HOLE say about a regular file's allocation. */
export interface Holes {
  sizeBytes: number;
  /** st_blocks * 512: what the filesystem has allocated, metadata blocks aside. */
  allocatedBytes: number;
  dataBytes: number;
  holeBytes: number;
  holeCount: number;
  /** false when the filesystem cannot report holes (it then claims everything is data). */
  seekHole: boolean;
}

/** FIEMAP extent counts; unwritten extents are fallocated but never written (they read as zeros). */
export interface Extents {
  supported: boolean;
  extents: number;
  unwrittenExtents: number;
  unwrittenBytes: number;
  mappedBytes: number;
  /** Gaps in [0, size) with no extent (fallocated ranges are not holes here, unlike SEEK_HOLE on ext4). */
  holeBytes: number;
  holeCount: number;
}

export interface DirectIoAlignment { memoryAlign: number; offsetAlign: number }

export type FallocateMode = 'allocate' | 'keep-size' | 'punch-hole' | 'zero-range';

export interface ThreadRusage { voluntarySwitches: number; involuntarySwitches: number; userMicros: number; systemMicros: number }

/** Counts from one aioProbe run: requests issued one per io_submit, each reaped before the next. */
export interface AioProbeCounts {
  submitted: number;
  honoured: number;
  /** EAGAIN, from io_submit or in the completion event. */
  bounced: number;
  bouncedAtSubmit: number;
  /** RWF_NOWAIT refused outright (EOPNOTSUPP/EINVAL): the file or device does not do nowait. */
  unsupported: number;
  errors: number;
  firstError: string | null;
  /** Voluntary context switches of the submitting thread inside io_submit, summed. */
  voluntarySwitches: number;
  submitNsTotal: number;
  submitNsMax: number;
}

export const holes: (fd: number) => Holes = addon.holes;
export const extents: (fd: number) => Extents = addon.extents;
/** statx STATX_DIOALIGN (Linux 6.1+), or null where the kernel or filesystem does not say. */
export const directIoAlignment: (fd: number) => DirectIoAlignment | null = addon.directIoAlignment;
export const fallocate: (fd: number, mode: FallocateMode, offset: number, length: number) => void = addon.fallocate;
/** Writes `byte` over a range through an aligned buffer (works on O_DIRECT fds). */
export const fillDirect: (fd: number, offset: number, length: number, byte: number) => void = addon.fillDirect;
export const threadRusage: () => ThreadRusage = addon.threadRusage;
export const aioProbe: (fd: number, op: 'read' | 'write', offsets: Float64Array, blockSize: number, nowait: boolean) => AioProbeCounts = addon.aioProbe;

export type OfdLockType = 'read' | 'write';
/** A lock another open file description holds; pid is -1 for OFD locks (the kernel does not say whose). */
export interface OfdConflict { type: OfdLockType; start: number; length: number; pid: number }
/** fcntl F_OFD_SETLK on [start, start+length): never waits; throws EAGAIN/EACCES on a conflict. */
export const ofdLock: (fd: number, start: number, length: number, type: OfdLockType | 'unlock') => void = addon.ofdLock;
/** fcntl F_OFD_GETLK: null when a lock of `type` could be taken on fd, else the first lock in the way. */
export const ofdTest: (fd: number, start: number, length: number, type: OfdLockType) => OfdConflict | null = addon.ofdTest;
/** Up to `length` (at most 1 MiB) bytes at `offset`, through an aligned buffer: works on O_DIRECT fds. */
export const readAt: (fd: number, offset: number, length: number) => Buffer = addon.readAt;
