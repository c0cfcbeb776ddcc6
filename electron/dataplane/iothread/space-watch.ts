// While a disk holds writes parked for lack of space (enospc 'stop'), watches the free space of the
// filesystem holding its image (statfs once a second) and retries the parked writes when it grows,
// or, when it already looks large enough, every few seconds: Spindle resumes by itself once space
// is freed, where QEMU's werror=stop waits for a manual `cont`. Runs on the disk's IOThread.
import { statfsSync } from 'node:fs';
import type { RetryOutcome } from '../virtio/virtio-blk.js';

/** What waits for space, as the UI and `spindle export` say it. */
export interface SpaceStatus {
  /** Writes parked (waiting or being retried). */
  parked: number;
  /** The bytes they write. */
  parkedBytes: number;
  /** Free space an unprivileged user may use on the image's filesystem; null for a block device. */
  freeBytes: number | null;
  /** How much more free space the parked writes need at least; null when unknown (a block device). */
  missingBytes: number | null;
}

/** The disk's side: its parked writes and a way to retry them. */
export interface ParkedWrites {
  readonly parkedRequests: number;
  readonly parkedBytes: number;
  retryParked(): Promise<RetryOutcome>;
}

export interface SpaceWatchOptions {
  /** How often free space is looked at (default 1 s). */
  intervalMs?: number;
  /** With free space that looks large enough but unchanged, or on a block device (whose free space
   *  statfs cannot see), retry this often (default 5 s). */
  retryMs?: number;
  /** statfs, replaceable by tests. */
  statfs?: (path: string) => { bsize: number; bfree: number; bavail: number };
}

export class SpaceWatch {
  private timer: NodeJS.Timeout | null = null;
  private retrying = false;
  private lastAttemptAt = 0;
  /** Free blocks (root's view) at the last retry or when watching began: growth means a retry. */
  private lastAttemptFree = -1;
  private lastReported = '';
  private readonly intervalMs: number;
  private readonly retryMs: number;
  private readonly statfs: NonNullable<SpaceWatchOptions['statfs']>;

  constructor(
    private readonly path: string,
    private readonly kind: 'file' | 'block',
    private readonly disk: ParkedWrites,
    private readonly onStatus: (s: SpaceStatus) => void,
    opts: SpaceWatchOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.retryMs = opts.retryMs ?? 5000;
    this.statfs = opts.statfs ?? ((p) => statfsSync(p));
  }

  get watching(): boolean {
    return this.timer !== null;
  }

  /** The numbers now (one statfs). */
  status(): SpaceStatus {
    const parked = this.disk.parkedRequests;
    const parkedBytes = this.disk.parkedBytes;
    const fs = this.sample();
    if (!fs) return { parked, parkedBytes, freeBytes: null, missingBytes: null };
    return { parked, parkedBytes, freeBytes: fs.avail, missingBytes: Math.max(0, parkedBytes - fs.avail) };
  }

  /** Writes were parked: watch until none is left. Reports the status it starts from. */
  start(): SpaceStatus {
    const status = this.status();
    this.lastReported = key(status);
    if (this.timer) return status;
    this.lastAttemptAt = Date.now();
    this.lastAttemptFree = this.sample()?.free ?? -1;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref?.();
    return status;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One look: retry when space grew (or looks enough and a while passed); say when the numbers change. */
  async tick(): Promise<void> {
    if (this.disk.parkedRequests === 0) {
      this.stop();
      return;
    }
    const fs = this.sample();
    const now = Date.now();
    const due = now - this.lastAttemptAt >= this.retryMs;
    const worth = fs ? fs.free > this.lastAttemptFree || (fs.avail >= this.disk.parkedBytes && due) : due;
    if (worth && !this.retrying) await this.retry(fs?.free ?? -1);
    this.report();
  }

  /** Retries the parked writes now (also on demand: a resume asked for by the user). */
  async retry(freeNow = this.sample()?.free ?? -1): Promise<RetryOutcome> {
    this.retrying = true;
    this.lastAttemptAt = Date.now();
    this.lastAttemptFree = freeNow;
    try {
      return await this.disk.retryParked();
    } finally {
      this.retrying = false;
    }
  }

  private report(): void {
    if (!this.timer) return;
    const s = this.status();
    if (s.parked === 0) return;
    const k = key(s);
    if (k === this.lastReported) return;
    this.lastReported = k;
    this.onStatus(s);
  }

  /** Free bytes in root's view (any growth counts) and an unprivileged user's (what is shown). */
  private sample(): { free: number; avail: number } | null {
    if (this.kind === 'block') return null;
    try {
      const st = this.statfs(this.path);
      return { free: st.bfree * st.bsize, avail: st.bavail * st.bsize };
    } catch {
      return null; // the file is gone or the filesystem unreachable: retry on the timer alone
    }
  }
}

const key = (s: SpaceStatus): string => `${s.parked}/${s.parkedBytes}/${s.freeBytes}`;
