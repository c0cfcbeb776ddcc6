// Typed view of native/posix: unix sockets with fd passing, an fd watcher in this thread's
// event loop, eventfds, memfd and shared mmap as Uint8Array views (zero copy). Errors are Node-style
// system errors (code 'ENOENT', errno, syscall).
import { addon } from './addon.js';

export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;

/** memfd seals (fcntl F_ADD_SEALS / F_GET_SEALS). */
export const SEAL_SEAL = 0x1;
export const SEAL_SHRINK = 0x2;
export const SEAL_GROW = 0x4;
/** What Spindle seals its own memfds with: their size is fixed for good, so no holder of the fd
 *  can truncate it under a mapping (a mapped page past the end of a file faults with SIGBUS). */
export const SEALS_FIXED_SIZE = SEAL_SHRINK | SEAL_GROW | SEAL_SEAL;

export interface FdWatch {
  /** Idempotent; safe from inside the watcher's own callback. */
  stop(): void;
}

/**
 * Called when the fd is ready. `events` is POLL_READABLE/POLL_WRITABLE bits; with drainEventfd
 * the eventfd was already read natively and `value` is its counter (0 on a spurious wakeup).
 * `error` (a negative errno) means polling failed and the watch has stopped.
 */
export type FdWatchCallback = (events: number, value: number, error: number | undefined) => void;

export interface ReceivedMessage {
  /** 0 means the peer closed the connection. */
  bytes: number;
  fds: number[];
}

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

export interface Posix {
  /** A listening, non-blocking unix stream socket bound to `path` (which must not exist). */
  listenUnix(path: string, backlog?: number): number;
  /** The next pending connection, or -1 when there is none. */
  acceptUnix(listenFd: number): number;
  /** A connected, non-blocking unix stream socket. */
  connectUnix(path: string): number;
  /** A connected unix stream socket pair. */
  socketPair(): [number, number];
  /** Non-blocking recvmsg into buffer[offset, offset+length); null when nothing is pending. */
  recvMsg(fd: number, buffer: Uint8Array, offset: number, length: number): ReceivedMessage | null;
  /** Non-blocking sendmsg; fds ride with the first byte. Bytes sent, or -1 if the socket is full. */
  sendMsg(fd: number, buffer: Uint8Array, offset: number, length: number, fds?: readonly number[]): number;
  peerCred(fd: number): PeerCredentials;

  watchFd(fd: number, events: number, cb: FdWatchCallback, drainEventfd?: boolean): FdWatch;

  /** Non-blocking, close-on-exec eventfd. */
  eventfdCreate(initial?: number): number;
  /** Reads (and resets) the counter; 0 when nothing was pending. */
  eventfdRead(fd: number): number;
  /** Adds `value` (default 1) to the counter: wakes whoever watches it. */
  eventfdWrite(fd: number, value?: number): void;

  /** An anonymous shared-memory file of `sizeBytes`, sealed with `seals` (default SEALS_FIXED_SIZE; 0: unsealed). */
  memfdCreate(name: string, sizeBytes: number, seals?: number): number;
  /** The file's seals (SEAL_* bits), or -1 when it cannot carry seals (not a memfd or other shmem file). */
  fileSeals(fd: number): number;
  /** True when the fd's file lives on hugetlbfs (a memfd made with MFD_HUGETLB, or a file there). */
  onHugetlbfs(fd: number): boolean;
  /**
   * mmap(MAP_SHARED) of [offset, offset+length) of fd, zero copy, as a view of exactly `length`
   * bytes. Where external ArrayBuffers are allowed the view starts at byteOffset 0 of an external
   * buffer; where they are not (Electron's V8 memory cage, or SPINDLE_MAP_IN_V8=1) the file is
   * mapped inside a V8-owned ArrayBuffer and the view starts at an offset into it. Either way use
   * the view's buffer/byteOffset, never the whole buffer, and never transfer that buffer.
   */
  mapShared(fd: number, offset: number, length: number, writable?: boolean): Uint8Array;
  /** Detaches the view's ArrayBuffer (all its views become empty), then unmaps. Idempotent. */
  unmap(view: Uint8Array): void;
  /** True when mapShared places mappings inside V8-owned ArrayBuffers (see mapShared). */
  mapsInV8(): boolean;

  closeFd(fd: number): void;
  setNonBlocking(fd: number, on: boolean): void;
}

/** Told of every fd this thread opens, receives or closes through `posix` (and openDisk). */
export interface FdObserver {
  opened(fd: number): void;
  closed(fd: number): void;
}

// Module state is per thread (each worker_thread loads its own copy), so is the observer.
let observer: FdObserver | null = null;

/** Watches this thread's fds; a disk's IOThread records them so they can be closed if it dies. */
export function observeFds(o: FdObserver | null): void {
  observer = o;
}

/** For fds opened or closed outside `posix` (node:fs). */
export function noteFdOpened(fd: number): void {
  observer?.opened(fd);
}
export function noteFdClosed(fd: number): void {
  observer?.closed(fd);
}

const native = addon as Posix;
const opened = (fd: number): number => {
  observer?.opened(fd);
  return fd;
};

export const posix: Posix = {
  ...native,
  listenUnix: (path, backlog) => opened(native.listenUnix(path, backlog)),
  acceptUnix: (listenFd) => {
    const fd = native.acceptUnix(listenFd);
    return fd >= 0 ? opened(fd) : fd;
  },
  connectUnix: (path) => opened(native.connectUnix(path)),
  socketPair: () => {
    const pair = native.socketPair();
    pair.forEach(opened);
    return pair;
  },
  recvMsg: (fd, buffer, offset, length) => {
    const m = native.recvMsg(fd, buffer, offset, length);
    m?.fds.forEach(opened);
    return m;
  },
  eventfdCreate: (initial) => opened(native.eventfdCreate(initial)),
  memfdCreate: (name, sizeBytes, seals = SEALS_FIXED_SIZE) => opened(native.memfdCreate(name, sizeBytes, seals)),
  closeFd: (fd) => {
    try {
      native.closeFd(fd);
    } finally {
      observer?.closed(fd);
    }
  },
};

/** Closes an fd, ignoring errors: for cleanup paths where the fd may already be gone. */
export function closeQuietly(fd: number | null | undefined): void {
  if (fd === null || fd === undefined || fd < 0) return;
  try {
    posix.closeFd(fd);
  } catch {
    /* already closed */
  }
}
