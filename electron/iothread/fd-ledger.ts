// The fds a disk's worker must not take with it when it dies. A worker_thread that crashes has its
// event loop, mappings and engine torn down (env cleanup hooks), but fds are per process: the
// vhost-user connection would stay open, so QEMU would never notice the server died and never
// reconnect, and the listening socket would make the restarted server think someone else serves
// the path. The worker records both here (shared memory, written synchronously as they change);
// after it died the main thread closes those that are still the same open files (inode check, so a
// number reused by another disk meanwhile is never touched).
import { closeSync, fstatSync } from 'node:fs';

export const FD_LEDGER_SLOTS = 4;
const LISTEN = 0;
const CONNECTION = 2;

export type LedgerRole = 'listen' | 'connection';

export class FdLedger {
  readonly buffer: SharedArrayBuffer;
  private readonly slots: Float64Array;

  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(FD_LEDGER_SLOTS * 8);
    this.slots = new Float64Array(this.buffer, 0, FD_LEDGER_SLOTS);
    if (!buffer) this.slots.fill(-1);
  }

  /** Records `fd` for `role` (-1: released). Called by the worker. */
  record(role: LedgerRole, fd: number): void {
    const at = role === 'listen' ? LISTEN : CONNECTION;
    let ino = -1;
    if (fd >= 0) {
      try {
        ino = fstatSync(fd).ino;
      } catch {
        fd = -1;
      }
    }
    this.slots[at + 1] = ino;
    this.slots[at] = fd;
  }

  /** After the worker died: closes what it left open. Returns how many fds were closed. */
  closeLeftovers(): number {
    let closed = 0;
    for (const at of [CONNECTION, LISTEN]) {
      const fd = this.slots[at]!;
      const ino = this.slots[at + 1]!;
      this.slots[at] = -1;
      this.slots[at + 1] = -1;
      if (fd < 0) continue;
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
