// The fds a disk's worker must not take with it when it dies. A worker_thread that crashes has its
// event loop, mappings and engine torn down (env cleanup hooks), but fds are per process: the
// vhost-user connection would stay open, so QEMU would never notice the server died and never
// reconnect; the listening socket would make the restarted server think someone else serves the
// path; the disk, guest-memory, eventfd and inflight fds would leak with every crash. The worker
// records every fd it opens or receives and forgets those it closes (posix.ts observeFds, shared
// memory, written synchronously); after it died the main thread closes what is left, each only if
// it is still the same open file (inode check, so a number reused meanwhile is not touched).
import { closeSync, fstatSync } from 'node:fs';

/** Fds one disk's thread holds at once: two sockets, the disk, guest memory regions, two eventfds
 *  per queue, the inflight region. Beyond this a crash would leak the extra ones, nothing worse. */
export const FD_LEDGER_SLOTS = 512;
const EMPTY = -1;

export class FdLedger {
  readonly buffer: SharedArrayBuffer;
  /** Pairs [fd, inode]; fd EMPTY when the slot is free. */
  private readonly slots: Float64Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(FD_LEDGER_SLOTS * 2 * 8);
    this.slots = new Float64Array(this.buffer, 0, FD_LEDGER_SLOTS * 2);
    if (!buffer) this.slots.fill(EMPTY);
  }

  /** Records an fd the worker now owns. Called by the worker (control path only: a linear scan). */
  add(fd: number): void {
    let ino: number;
    try {
      ino = fstatSync(fd).ino;
    } catch {
      return;
    }
    const s = this.slots;
    for (let i = 0; i < s.length; i += 2) {
      if (s[i] !== EMPTY && s[i] !== fd) continue;
      s[i + 1] = ino;
      s[i] = fd;
      return;
    }
  }

  /** Forgets an fd the worker closed. */
  remove(fd: number): void {
    const s = this.slots;
    for (let i = 0; i < s.length; i += 2) {
      if (s[i] === fd) s[i] = EMPTY;
    }
  }

  /** Fds recorded now. */
  get size(): number {
    let n = 0;
    for (let i = 0; i < this.slots.length; i += 2) if (this.slots[i] !== EMPTY) n++;
    return n;
  }

  /** After the worker died: closes what it left open. Returns how many fds were closed. */
  closeLeftovers(): number {
    let closed = 0;
    const s = this.slots;
    for (let i = 0; i < s.length; i += 2) {
      const fd = s[i]!;
      const ino = s[i + 1]!;
      s[i] = EMPTY;
      if (fd === EMPTY) continue;
      try {
        if (fstatSync(fd).ino !== ino) continue;
        closeSync(fd);
        closed++;
      } catch {
        /* already closed */
      }
    }
    return closed;
  }
}
