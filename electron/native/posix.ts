// Typed view of native/posix: unix sockets with fd passing, an fd watcher in this thread's
// event loop, eventfds, memfd and shared mmap as external ArrayBuffers. Errors are Node-style
// system errors (code 'ENOENT', errno, syscall).
import { addon } from './addon.js';

export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;

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

  /** An anonymous shared-memory file of `sizeBytes`. */
  memfdCreate(name: string, sizeBytes: number): number;
  /** mmap(MAP_SHARED) of [offset, offset+length) of fd as an external ArrayBuffer (zero copy). */
  mapShared(fd: number, offset: number, length: number, writable?: boolean): ArrayBuffer;
  /** Detaches the ArrayBuffer (all views become empty), then munmaps. Idempotent. */
  unmap(buffer: ArrayBuffer): void;

  closeFd(fd: number): void;
  setNonBlocking(fd: number, on: boolean): void;
}

export const posix: Posix = addon as Posix;

/** Closes an fd, ignoring errors: for cleanup paths where the fd may already be gone. */
export function closeQuietly(fd: number | null | undefined): void {
  if (fd === null || fd === undefined || fd < 0) return;
  try {
    posix.closeFd(fd);
  } catch {
    /* already closed */
  }
}
