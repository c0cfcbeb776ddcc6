// Host faults under a served disk: the guest already gets IOERR for every failed
// request; this watch turns what the host did into one sentence for the log and the UI:
// requests failing (a dying device, a filesystem shut down after errors), the image file deleted,
// moved or replaced, a loop device detached or a block device removed. It polls cheap things
// (shared counters, one stat, two sysfs reads) on the main thread; the data plane is untouched.
import { EventEmitter } from 'node:events';
import { readFileSync, statSync, type Stats } from 'node:fs';
import { basename } from 'node:path';
import { DIRECTIONS, type CountersSnapshot } from '../../dataplane/block/stats.js';

export type DiskFaultKind = 'io-errors' | 'file-gone' | 'file-replaced' | 'loop-detached' | 'device-gone';

export interface DiskFault {
  kind: DiskFaultKind;
  /** A sentence for the user. */
  reason: string;
}

export interface WatchedDisk {
  readonly spec: { path: string };
  stats(): CountersSnapshot;
  /** Requests the guest got back as failed, per direction. Without it the engine's error counts
   *  are used, which also count writes that met ENOSPC and were parked, not failed. */
  failedRequests?(): Record<string, number>;
}

const DEFAULT_INTERVAL_MS = 2000;

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function sysfs(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

const failedRequests = (s: CountersSnapshot): Record<string, number> => Object.fromEntries(DIRECTIONS.map((d) => [d, s[d].errors]));

export class DiskFaultWatch extends EventEmitter<{ fault: [DiskFault] }> {
  private readonly path: string;
  private readonly identity: Stats | null;
  /** /sys/block/<name> of a whole block device (partitions have no loop/ directory anyway). */
  private readonly sysBlock: string | null;
  private readonly loopAutoclear: string | null;
  private lastErrors: Record<string, number>;
  private lastCheck = Date.now();
  /** Kinds already reported: each is said once, except I/O errors after a quiet spell. */
  private readonly said = new Set<DiskFaultKind>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly disk: WatchedDisk,
    private readonly intervalMs = DEFAULT_INTERVAL_MS,
  ) {
    super();
    this.path = disk.spec.path;
    this.identity = statOrNull(this.path);
    this.sysBlock = this.identity?.isBlockDevice() ? `/sys/class/block/${basename(this.path)}` : null;
    this.loopAutoclear = this.sysBlock ? sysfs(`${this.sysBlock}/loop/autoclear`) : null;
    this.lastErrors = this.failed();
  }

  start(): this {
    this.timer ??= setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private failed(): Record<string, number> {
    return this.disk.failedRequests?.() ?? failedRequests(this.disk.stats());
  }

  /** One look at the disk; returns what it found (also emitted as 'fault'). */
  check(): DiskFault[] {
    const found: DiskFault[] = [];
    const say = (kind: DiskFaultKind, reason: string): void => {
      if (this.said.has(kind)) return;
      this.said.add(kind);
      found.push({ kind, reason });
    };

    const now = Date.now();
    const errors = this.failed();
    const grown = DIRECTIONS.filter((d) => errors[d]! > this.lastErrors[d]!);
    if (grown.length) {
      const n = grown.reduce((a, d) => a + errors[d]! - this.lastErrors[d]!, 0);
      const what = grown.map((d) => `${errors[d]! - this.lastErrors[d]!} ${d}`).join(', ');
      say(
        'io-errors',
        `${n} I/O request${n === 1 ? '' : 's'} on ${this.path} failed in the last ${Math.max(1, Math.round((now - this.lastCheck) / 1000))} s (${what}): the host's disk or filesystem reports errors, and the guest sees I/O errors on this disk. Other disks are not affected.`,
      );
    } else {
      this.said.delete('io-errors'); // a quiet spell: the next burst is reported again
    }
    this.lastErrors = errors;
    this.lastCheck = now;

    const id = this.identity;
    if (id && this.sysBlock) {
      if (sysfs(`${this.sysBlock}/dev`) === null) {
        say('device-gone', `The block device ${this.path} was removed from the host; the guest gets I/O errors on this disk.`);
      } else if (this.loopAutoclear === '0' && sysfs(`${this.sysBlock}/loop/autoclear`) === '1') {
        const backing = sysfs(`${this.sysBlock}/loop/backing_file`);
        say(
          'loop-detached',
          `The loop device ${this.path}${backing ? ` (over ${backing})` : ''} was detached on the host; it keeps working until this disk stops, then it disappears.`,
        );
      }
    } else if (id) {
      const now = statOrNull(this.path);
      if (!now) {
        say(
          'file-gone',
          `The image file ${this.path} was deleted or moved while the disk is in use: the disk keeps working on the open file, but it is lost when the disk stops unless the file is put back.`,
        );
      } else if (now.ino !== id.ino || now.dev !== id.dev) {
        say(
          'file-replaced',
          `The image file ${this.path} was replaced by another file while the disk is in use: the disk keeps using the original; the new file is not what the guest sees.`,
        );
      }
    }
    for (const f of found) this.emit('fault', f);
    return found;
  }
}
