// A disk server's typed events, read two ways apart: what an event means for the disk and its VM
// (effectOf: disk-slots.ts drives state from it), and the sentence the log shows for it
// (describeDiskEvent, made only where the line is emitted).
import type { SpaceStatus } from '../../dataplane/iothread/messages.js';
import { formatSize } from '../../shared/size.js';
import type { DiskHostEvent, SpaceWait } from './disk-host.js';

/**
 * - broken: the guest sent a malformed request and the queue stopped (virtio NEEDS_RESET), or the
 *   disk's IOThread stopped for good;
 * - no-space: writes were parked because the filesystem holding the disk is full (enospc 'stop'):
 *   the VM pauses;
 * - space-wait: what the parked writes wait for changed (no log line);
 * - space-freed: no parked write is left (written; gone with the driver; or back in QEMU's
 *   inflight area after an IOThread restart): a VM paused for lack of space may go on.
 */
export type DiskEffect = 'broken' | 'no-space' | 'space-wait' | 'space-freed';

export function effectOf(e: DiskHostEvent): DiskEffect | null {
  switch (e.kind) {
    case 'broken':
    case 'failed':
      return 'broken';
    case 'no-space':
      return 'no-space';
    case 'space-wait':
      return 'space-wait';
    // Writes it held for lack of space are QEMU's to resubmit from its inflight area now, once
    // the guest runs: a VM paused for them goes on (and pauses again if they still do not fit).
    case 'space-recovered':
    case 'restarted':
      return 'space-freed';
    default:
      return null;
  }
}

export const spaceWaitOf = (s: SpaceStatus): SpaceWait => ({
  parkedRequests: s.parked,
  parkedBytes: s.parkedBytes,
  freeBytes: s.freeBytes,
  missingBytes: s.missingBytes,
});

/** "3 writes (3 MiB) wait for 2.5 MiB more free space": what parked writes wait for, in words. */
export function describeSpaceWait(s: SpaceWait): string {
  const n = s.parkedRequests;
  const writes = `${n} write${n === 1 ? '' : 's'}${s.parkedBytes > 0 ? ` (${formatSize(s.parkedBytes)})` : ''} wait${n === 1 ? 's' : ''}`;
  if (s.missingBytes === null) return `${writes} for space`;
  return s.missingBytes > 0
    ? `${writes} for ${formatSize(s.missingBytes)} more free space`
    : `${writes} to be retried (${formatSize(s.freeBytes ?? 0)} free)`;
}

export interface DiskLogLine {
  level: 'info' | 'warning' | 'error';
  message: string;
}

/** A disk event as a line for the log/UI (null: not worth one). `path`: the disk's image or device. */
export function describeDiskEvent(e: DiskHostEvent, path = 'the disk image'): DiskLogLine | null {
  switch (e.kind) {
    case 'log':
      return { level: 'info', message: e.line };
    case 'fault':
      return { level: 'error', message: e.reason };
    case 'connected':
      return { level: 'info', message: `QEMU connected${e.pid ? ` (pid ${e.pid})` : ''}.` };
    case 'disconnected':
      return { level: 'info', message: `QEMU disconnected${e.reason ? `: ${e.reason}` : '.'}` };
    case 'broken':
      return { level: 'error', message: `The guest sent a malformed request on queue ${e.queue}; the queue stopped: ${e.reason}` };
    case 'nowait':
      return { level: e.enabled ? 'info' : 'warning', message: `RWF_NOWAIT ${e.enabled ? 'on' : 'off'} for ${e.direction}s: ${e.reason}` };
    case 'modes':
      return { level: 'info', message: `Now serving with aio '${e.aio}', cache '${e.cache}', nowait '${e.nowait}'.` };
    case 'resized':
      return e.guestNotice
        ? { level: 'warning', message: `${path} grew to ${formatSize(e.sizeBytes)}, but ${e.guestNotice}.` }
        : { level: 'info', message: `${path} grew to ${formatSize(e.sizeBytes)}; the guest was told its new size.` };
    case 'resubmitted':
      return {
        level: 'info',
        message: `Resubmitted ${e.count} request(s) that were in flight when the disk server restarted (queue ${e.queue}).`,
      };
    case 'restarting':
      return { level: 'warning', message: `The disk's I/O thread died (${e.reason}); restarting it (attempt ${e.attempt}).` };
    case 'restarted':
      return { level: 'info', message: `The disk's I/O thread is back (restarts so far: ${e.restarts}); QEMU reconnects by itself.` };
    case 'failed':
      return { level: 'error', message: `The disk's I/O thread stopped: ${e.reason}` };
    case 'no-space': {
      const space = spaceWaitOf(e);
      const message = e.retried
        ? `Retried the parked writes on ${path}: its filesystem is still full; ${describeSpaceWait(space)}.`
        : `The filesystem holding ${path} is full: ${describeSpaceWait(space)}. They are retried as space is freed.`;
      return { level: 'warning', message };
    }
    case 'space-wait':
      return null;
    case 'space-recovered': {
      const n = e.completed;
      const message =
        e.dropped > 0
          ? `${e.dropped} write${e.dropped === 1 ? '' : 's'} parked for lack of space on ${path} went with the guest's driver (it reset or disconnected); ${n} completed.`
          : `Space was freed on the filesystem holding ${path}: ${n} parked write${n === 1 ? '' : 's'} completed after ${Math.round(e.waitedMs / 1000)} s.`;
      return { level: 'info', message };
    }
  }
}
