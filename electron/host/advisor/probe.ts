// `spindle inspect --probe`: measure, on a temporary file beside PATH, whether this
// filesystem honours RWF_NOWAIT for direct I/O in sparse, fallocated and written regions, and how
// often io_submit sleeps without nowait. PATH's data is never read or written; the temporary file
// is removed afterwards, also on SIGINT/SIGTERM or an exception.
import { closeSync, constants, openSync, readdirSync, statfsSync, unlinkSync, ftruncateSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { aioProbe, extents, fallocate, fillDirect, holes, type AioProbeCounts } from '../../dataplane/native/os.js';
import { formatSize } from '../../shared/size.js';

export const REGION_KINDS = ['sparse', 'fallocated', 'written'] as const;
export type RegionKind = (typeof REGION_KINDS)[number];

export interface Rate {
  requests: number;
  honoured: number;
  /** EAGAIN: the request would have blocked. */
  bounced: number;
  /** RWF_NOWAIT refused outright (EOPNOTSUPP). */
  unsupported: number;
  errors: number;
  /** honoured / requests, 0..1. */
  honouredRatio: number;
}

export interface RegionProbe {
  nowaitWrites: Rate;
  nowaitReads: Rate;
  /** Voluntary context switches per io_submit of a plain (no nowait) 4k write: > 0 means io_submit sleeps. */
  submitSwitchesPerIo: number;
  /** Longest single io_submit of those plain writes, in microseconds. */
  maxSubmitMicros: number;
}

/** PATH's own allocation, read-only: holes and unwritten (fallocated, never written) extents. */
export interface TargetAllocation {
  holeCount: number;
  holeBytes: number;
  fiemap: boolean;
  unwrittenExtents: number;
  unwrittenBytes: number;
}

export interface FilesystemProbe {
  filesystem: string;
  /** Where the temporary file was made (PATH's directory). */
  directory: string;
  blockSize: number;
  requestsPerPhase: number;
  /** false when the filesystem refuses RWF_NOWAIT altogether. */
  nowaitSupported: boolean;
  regions: Record<RegionKind, RegionProbe | null>;
  /** Honoured ratio of nowait writes per region kind (null: region could not be made, e.g. no fallocate). */
  nowaitWrites: Record<RegionKind, number | null>;
  nowaitReads: Record<RegionKind, number | null>;
  submitSwitchesPerIo: Record<RegionKind, number | null>;
  target: TargetAllocation;
  /** Whether native AIO with RWF_NOWAIT qualifies on this filesystem, and why, in sentences. */
  verdict: { nowait: boolean; summary: string; reasons: string[] };
}

const REGION_BYTES = 8 << 20;
const REQUESTS = 64;
const BLOCK = 4096;
const PREFIX = '.spindle-probe-';
const QUALIFY_RATIO = 0.9;

/** Reads PATH's holes and unwritten extents without touching its data. */
export function targetAllocation(fd: number): TargetAllocation {
  const h = holes(fd);
  const e = extents(fd);
  return {
    holeCount: e.supported ? e.holeCount : h.holeCount,
    holeBytes: e.supported ? e.holeBytes : h.holeBytes,
    fiemap: e.supported,
    unwrittenExtents: e.unwrittenExtents,
    unwrittenBytes: e.unwrittenBytes,
  };
}

/** `count` distinct block-aligned offsets in [base, base + REGION_BYTES), disjoint from `used`. */
function offsets(base: number, count: number, used: Set<number>): Float64Array {
  const out = new Float64Array(count);
  const slots = REGION_BYTES / BLOCK;
  for (let i = 0; i < count; i++) {
    let off: number;
    do off = base + Math.floor(Math.random() * slots) * BLOCK;
    while (used.has(off));
    used.add(off);
    out[i] = off;
  }
  return out;
}

const rate = (c: AioProbeCounts): Rate => ({
  requests: c.submitted,
  honoured: c.honoured,
  bounced: c.bounced,
  unsupported: c.unsupported,
  errors: c.errors,
  honouredRatio: c.submitted ? c.honoured / c.submitted : 0,
});

/** Removes temporary files left by probes whose process is gone (a SIGKILL leaves them behind). */
function removeStale(dir: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => n.startsWith(PREFIX));
  } catch {
    return;
  }
  for (const n of names) {
    const pid = Number(n.slice(PREFIX.length).split('-')[0]);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      process.kill(pid, 0);
    } catch (err) {
      if (errnoOf(err) === 'ESRCH')
        try {
          unlinkSync(join(dir, n));
        } catch {
          /* raced */
        }
    }
  }
}

/**
 * A temporary file that is unlinked on close, on SIGINT/SIGTERM (then the signal is re-raised
 * when nobody else handles it) and at process exit.
 */
class TemporaryProbeFile {
  readonly path: string;
  readonly fd: number;
  private removed = false;
  private readonly onSignal = (sig: NodeJS.Signals) => {
    this.remove();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  private readonly onExit = () => this.remove();

  constructor(dir: string) {
    this.path = join(dir, `${PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
    this.fd = openSync(this.path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT, 0o600);
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
    process.once('exit', this.onExit);
  }

  /** Closes and unlinks the file; the signal handlers stay until remove(). */
  removeFile(): void {
    if (this.removed) return;
    this.removed = true;
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
    try {
      unlinkSync(this.path);
    } catch {
      /* already gone */
    }
  }

  remove(): void {
    this.removeFile();
    process.removeListener('SIGINT', this.onSignal);
    process.removeListener('SIGTERM', this.onSignal);
    process.removeListener('exit', this.onExit);
  }
}

function probeRegion(fd: number, base: number): RegionProbe {
  const used = new Set<number>();
  // Reads first, so they see the region as prepared, then nowait writes, then plain writes on
  // other blocks (which allocate them: in a sparse region those are the blocks that would stall).
  const reads = aioProbe(fd, 'read', offsets(base, REQUESTS, used), BLOCK, true);
  const writes = aioProbe(fd, 'write', offsets(base, REQUESTS, used), BLOCK, true);
  const plain = aioProbe(fd, 'write', offsets(base, REQUESTS, used), BLOCK, false);
  if (plain.errors) {
    throw new SpindleError(
      'IO_ERROR',
      `The probe's direct writes failed (${plain.firstError}): the filesystem does not take 4 KiB direct I/O here.`,
      plain.firstError ?? undefined,
    );
  }
  return {
    nowaitReads: rate(reads),
    nowaitWrites: rate(writes),
    submitSwitchesPerIo: plain.submitted ? plain.voluntarySwitches / plain.submitted : 0,
    maxSubmitMicros: Math.round(plain.submitNsMax / 1000),
  };
}

const pct = (r: number) => `${Math.round(r * 100)}%`;

/** The verdict from the numbers: the only place that decides what a probe means. */
export function probeVerdict(
  fsName: string,
  regions: Record<RegionKind, RegionProbe | null>,
  nowaitSupported: boolean,
): FilesystemProbe['verdict'] {
  const reasons: string[] = [];
  if (!nowaitSupported) {
    const summary = `${fsName}: RWF_NOWAIT is not supported here, so native AIO cannot avoid blocking on this filesystem.`;
    return { nowait: false, summary, reasons: [summary] };
  }
  const allocated = [regions.written, regions.fallocated].filter((r): r is RegionProbe => r !== null);
  const minWrite = Math.min(...allocated.map((r) => r.nowaitWrites.honouredRatio));
  const minRead = Math.min(
    ...REGION_KINDS.map((k) => regions[k])
      .filter((r): r is RegionProbe => r !== null)
      .map((r) => r.nowaitReads.honouredRatio),
  );
  const sparse = regions.sparse!;
  const nowait = minWrite >= QUALIFY_RATIO && minRead >= QUALIFY_RATIO;
  const summary = nowait
    ? sparse.nowaitWrites.honouredRatio < QUALIFY_RATIO
      ? `${fsName}: native safe; sparse regions go through the thread pool until written.`
      : `${fsName}: native safe; nowait writes were honoured even in sparse regions.`
    : minWrite < QUALIFY_RATIO
      ? `${fsName}: nowait writes bounce even where blocks are allocated, so native with nowait would send most writes through the thread pool.`
      : `${fsName}: nowait reads bounce, so native with nowait would send many reads through the thread pool.`;
  reasons.push(summary);
  const kinds = REGION_KINDS.filter((k) => regions[k]);
  reasons.push(
    `Nowait writes honoured: ${kinds.map((k) => `${pct(regions[k]!.nowaitWrites.honouredRatio)} in ${k}`).join(', ')} regions; nowait reads honoured: ${kinds.map((k) => `${pct(regions[k]!.nowaitReads.honouredRatio)} in ${k}`).join(', ')} regions.`,
  );
  const sw = kinds.map((k) => `${regions[k]!.submitSwitchesPerIo.toFixed(2)} in ${k}`).join(', ');
  const maxSw = Math.max(...kinds.map((k) => regions[k]!.submitSwitchesPerIo));
  reasons.push(
    maxSw > 0
      ? `Without nowait, io_submit slept (voluntary context switches per request: ${sw}): plain native AIO would stall the disk's thread there.`
      : `Without nowait, io_submit did not sleep in this run (${sw} switches per request), though it can when the filesystem must read metadata from disk.`,
  );
  if (!regions.fallocated) reasons.push(`${fsName} has no fallocate here, so the fallocated case was not measured.`);
  return { nowait, summary, reasons };
}

/**
 * Probes the filesystem that holds `besidePath` with a temporary file in the same directory.
 * `targetFd` (PATH opened read-only) is only asked for its holes and extents.
 */
export async function probeFilesystem(besidePath: string, fsName: string, targetFd: number): Promise<FilesystemProbe> {
  const dir = dirname(besidePath);
  const need = 3 * REGION_BYTES + (8 << 20);
  const sfs = statfsSync(dir);
  if (sfs.bavail * sfs.bsize < need) {
    throw new SpindleError(
      'NO_SPACE',
      `The probe needs ${formatSize(need)} free beside ${besidePath}, but ${dir} has ${formatSize(sfs.bavail * sfs.bsize)}.`,
      'ENOSPC',
    );
  }
  removeStale(dir);
  let tmp: TemporaryProbeFile;
  try {
    tmp = new TemporaryProbeFile(dir);
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      throw new SpindleError(
        'PERMISSION_DENIED',
        `The probe cannot create its temporary file in ${dir} (${code}): it needs a writable directory beside the image.`,
        code,
        { cause: err },
      );
    }
    if (code === 'EINVAL')
      throw new SpindleError(
        'UNSUPPORTED_MODE',
        `${fsName} in ${dir} does not support O_DIRECT, so there is nothing to probe for native AIO.`,
        code,
        { cause: err },
      );
    throw err;
  }
  try {
    const hold = Number(process.env.SPINDLE_PROBE_HOLD_MS ?? 0); // test hook: widens the window for the interrupt test
    if (hold > 0) await sleep(hold);
    const fd = tmp.fd;
    ftruncateSync(fd, 3 * REGION_BYTES);
    let fallocated = true;
    try {
      fallocate(fd, 'keep-size', REGION_BYTES, REGION_BYTES);
    } catch (err) {
      if (errnoOf(err) !== 'EOPNOTSUPP') throw err;
      fallocated = false;
    }
    fillDirect(fd, 2 * REGION_BYTES, REGION_BYTES, 0xa5);
    await yieldToLoop();
    const regions = { sparse: null, fallocated: null, written: null } as Record<RegionKind, RegionProbe | null>;
    for (const [kind, base] of [
      ['sparse', 0],
      ['fallocated', REGION_BYTES],
      ['written', 2 * REGION_BYTES],
    ] as const) {
      if (kind === 'fallocated' && !fallocated) continue;
      regions[kind] = probeRegion(fd, base);
      await yieldToLoop(); // lets a SIGINT/SIGTERM handler run between phases
    }
    const nowaitSupported = !REGION_KINDS.some(
      (k) => regions[k] && regions[k]!.nowaitWrites.unsupported + regions[k]!.nowaitReads.unsupported > 0,
    );
    const pick = (f: (r: RegionProbe) => number) =>
      Object.fromEntries(REGION_KINDS.map((k) => [k, regions[k] ? f(regions[k]!) : null])) as Record<RegionKind, number | null>;
    return {
      filesystem: fsName,
      directory: dir,
      blockSize: BLOCK,
      requestsPerPhase: REQUESTS,
      nowaitSupported,
      regions,
      nowaitWrites: pick((r) => r.nowaitWrites.honouredRatio),
      nowaitReads: pick((r) => r.nowaitReads.honouredRatio),
      submitSwitchesPerIo: pick((r) => r.submitSwitchesPerIo),
      target: targetAllocation(targetFd),
      verdict: probeVerdict(fsName, regions, nowaitSupported),
    };
  } finally {
    tmp.removeFile();
    await yieldToLoop(); // a signal that arrived during the last phase still reaches its handler
    tmp.remove();
  }
}
