// The file advisor: what a path is, its format, how it is allocated,
// whether O_DIRECT works, whether the host or another program uses it, and which aio/cache modes
// Spindle recommends, with sentences.
import { closeSync, constants, openSync, statfsSync, type Stats } from 'node:fs';
import { errnoOf } from '../../shared/errors.js';
import { defaultModes, type AioMode, type CacheMode } from '../../shared/modes.js';
import { aioProbe, directIoAlignment, extents, geometry, holes } from '../../dataplane/native/os.js';
import { accessError, deviceUsage, statDiskPath, type DeviceUsage } from '../../dataplane/block/host-devices.js';
import { blockSizesOf, majMin, mounts } from '../../dataplane/block/sysfs.js';
import { detectFormat, nonRawError, type ImageFormat } from '../../dataplane/block/format-detect.js';
import { imageUsage, type ImageUsage } from '../../dataplane/block/image-lock.js';
import { probeFilesystem, type FilesystemProbe } from './probe.js';
import { imageInfo, type ImageInfo } from './image-info.js';
import { formatSize } from '../../shared/size.js';

export interface Allocation {
  allocatedBytes: number;
  holeBytes: number;
  holeCount: number;
  /** false when the filesystem cannot report holes by SEEK_HOLE. Holes come from FIEMAP when `fiemap`, else SEEK_HOLE, else st_blocks. */
  seekHole: boolean;
  fiemap: boolean;
  unwrittenExtents: number;
  unwrittenBytes: number;
}

export interface Recommendation {
  aio: AioMode;
  cache: CacheMode;
  /** Use RWF_NOWAIT with native AIO. Off for block devices; for files only when a probe qualified it. */
  nowait: boolean;
}

export interface Inspection {
  path: string;
  kind: 'file' | 'block';
  sizeBytes: number;
  /** null when neither the kernel, sysfs nor a probe could tell. */
  logicalBlockSize: number | null;
  /** Has holes (files); always false for block devices. */
  sparse: boolean;
  /** For files: allocation details; null for block devices. */
  allocation: Allocation | null;
  /** The filesystem holding the file (ext4, xfs, btrfs, tmpfs, ...); null for block devices. */
  filesystem: string | null;
  directIo: boolean;
  /** 'raw', or the container format its header shows (Spindle refuses those). */
  format: ImageFormat | 'raw';
  inUse: boolean;
  /** For block devices: mounts, holders, root, exclusive-open result. */
  usage: DeviceUsage | null;
  /** Who holds QEMU's image locks on it (writers, readers) and, for files, the loop devices reading it. */
  imageUse: ImageUsage;
  /** No holes, O_DIRECT works, logical block size known. Always true for usable devices. */
  safeForNative: boolean;
  recommended: Recommendation;
  reasons: string[];
  /** With `probe`: the measurement, or why it was skipped. */
  probe?: FilesystemProbe | { skipped: string };
  /** A raw or qcow2 image as a disk: virtual size, allocation, cluster size, backing chain. */
  image?: ImageInfo;
}

// statfs f_type magic numbers, for when mountinfo has no entry for the file's device (btrfs subvolumes).
const FS_MAGIC: Record<number, string> = {
  0xef53: 'ext4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x01021994: 'tmpfs',
  0x858458f6: 'ramfs',
  0x794c7630: 'overlay',
  0x6969: 'nfs',
  0x65735546: 'fuse',
  0x2fc12fc1: 'zfs',
  0xf2f52010: 'f2fs',
  0x4d44: 'vfat',
  0x5346544e: 'ntfs',
  0x73717368: 'squashfs',
  0xca451a4e: 'bcachefs',
  0xff534d42: 'cifs',
  0x01161970: 'gfs2',
  0x9fa0: 'proc',
  0x62656572: 'sysfs',
  0x1373: 'devfs',
  0x6e667364: 'nilfs',
};

/** The filesystem type holding `path`: mountinfo's name for its device, else statfs's magic number. */
export function filesystemName(path: string, st: Stats): string {
  const dn = majMin(st.dev);
  const m = mounts()
    .filter((x) => x.devNum === dn)
    .pop();
  if (m) return m.fstype;
  const type = statfsSync(path).type;
  return FS_MAGIC[type] ?? `unknown (0x${type.toString(16)})`;
}

function directIoWorks(path: string): boolean {
  try {
    closeSync(openSync(path, constants.O_RDONLY | constants.O_DIRECT));
    return true;
  } catch (err) {
    if (errnoOf(err) === 'EINVAL') return false;
    throw accessError(path, err);
  }
}

/**
 * The O_DIRECT alignment for a file: statx STATX_DIOALIGN (6.1+), else the backing device's queue
 * in sysfs (walking from a partition to its disk), else the smallest direct read that succeeds.
 */
function fileLogicalBlockSize(path: string, st: Stats, directIo: boolean): number | null {
  if (!directIo) return null;
  const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECT);
  try {
    const dio = directIoAlignment(fd);
    if (dio && dio.offsetAlign > 0) return dio.offsetAlign;
    const fromQueue = blockSizesOf(st.dev);
    if (fromQueue) return fromQueue.logical;
    if (st.size < 4096) return null; // a read at or past EOF proves nothing
    for (const size of [512, 1024, 2048, 4096]) {
      if (aioProbe(fd, 'read', Float64Array.of(0), size, false).honoured === 1) return size;
    }
    return null;
  } finally {
    closeSync(fd);
  }
}

export interface Facts {
  kind: 'file' | 'block';
  filesystem: string | null;
  sparse: boolean;
  allocation: Allocation | null;
  directIo: boolean;
  logicalBlockSize: number | null;
  probe?: FilesystemProbe;
}

/**
 * The recommendation rule, in one place so the policy can change in one place:
 * block device → native + none, nowait off; file → threads + writeback, noting when it is safe
 * for native (and, for a sparse file on ext4 or xfs, allocation-aware native for cache 'none'),
 * and nowait on only when a probe qualified the filesystem.
 */
export function recommend(f: Facts): { recommended: Recommendation; safeForNative: boolean; reasons: string[] } {
  const reasons: string[] = [];
  const modes = defaultModes(f.kind);
  if (f.kind === 'block') {
    reasons.push("Host block device: aio 'native' with cache 'none' (O_DIRECT) is the default; io_submit does not block on a device.");
    reasons.push(
      'nowait stays off on block devices: EAGAIN there means the device queue is full, so requests are retried rather than sent to the thread pool.',
    );
    return { recommended: { ...modes, nowait: false }, safeForNative: true, reasons };
  }
  const fsName = f.filesystem ?? 'this filesystem';
  reasons.push(`Image file: aio 'threads' with cache 'writeback' is the default for files.`);
  if (f.filesystem === 'tmpfs') {
    reasons.push(
      f.directIo
        ? 'tmpfs keeps the file in RAM: O_DIRECT is accepted but bypasses no cache, and the data is lost when the host reboots.'
        : 'tmpfs keeps the file in RAM and does not support O_DIRECT, and the data is lost when the host reboots.',
    );
  }
  const blockers: string[] = [];
  if (f.sparse && f.allocation) {
    blockers.push(
      `it is sparse (${formatSize(f.allocation.holeBytes)} in ${f.allocation.holeCount} hole${f.allocation.holeCount === 1 ? '' : 's'}), and io_submit can block while ${fsName} allocates blocks; preallocating it (fallocate) removes the holes`,
    );
  }
  if (!f.directIo) blockers.push(`${fsName} does not support O_DIRECT here, so cache 'none'/'directsync' and aio 'native' are unavailable`);
  if (f.directIo && f.logicalBlockSize === null) blockers.push('its logical block size could not be determined');
  const safeForNative = blockers.length === 0;
  if (safeForNative) {
    reasons.push(
      `Safe for native: no holes, O_DIRECT works on ${fsName}, logical block size ${f.logicalBlockSize} bytes; aio 'native' with cache 'none' will not block on allocation.`,
    );
  } else {
    reasons.push(`Not safe for native: ${blockers.join('; ')}.`);
  }
  // Measured with `npm run bench -- --only alloc-throttled` on these two (README, Benchmarks).
  if (!safeForNative && f.sparse && f.directIo && (f.filesystem === 'ext4' || f.filesystem === 'xfs')) {
    reasons.push(
      `For cache 'none' on this sparse file: aio 'native' with nowait 'auto' (allocation-aware). Writes into holes go to the thread pool, which allocates 1 MiB around them; every other write goes to Linux AIO with RWF_NOWAIT, so io_submit never allocates. On ${f.filesystem} it measured close to plain native's IOPS, ahead of io_uring and the thread pool, with shorter io_submit stalls than plain native.`,
    );
  }
  if (f.allocation && f.allocation.unwrittenBytes > 0) {
    reasons.push(
      `${formatSize(f.allocation.unwrittenBytes)} are preallocated but not yet written (unwritten extents): they read as zeros and writing them needs no allocation.`,
    );
  }
  let nowait = false;
  if (f.probe) {
    nowait = f.directIo && f.probe.verdict.nowait;
    reasons.push(...f.probe.verdict.reasons);
  } else if (f.directIo) {
    reasons.push('nowait not measured: run with --probe to see whether this filesystem honours RWF_NOWAIT (native AIO that never blocks).');
  }
  return { recommended: { ...modes, nowait }, safeForNative, reasons };
}

/** Raw and qcow2 images as disks; other containers have no such view (they are refused). */
function diskImage(
  path: string,
  format: ImageFormat | 'raw',
  sizeBytes: number,
  allocatedBytes: number | null,
): Promise<ImageInfo> | undefined {
  return format === 'raw' || format === 'qcow2' ? imageInfo(path, format, { sizeBytes, allocatedBytes }) : undefined;
}

/** Inspects an image file or host block device. Never writes to it; `probe` writes only a temporary file beside it. */
export async function inspect(path: string, opts: { probe?: boolean } = {}): Promise<Inspection> {
  const st = statDiskPath(path).stats;
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch (err) {
    throw accessError(path, err);
  }
  try {
    const geo = geometry(fd);
    const format = detectFormat(path) ?? 'raw'; // read with O_DIRECT: no page-cache pages left behind
    const formatReasons = format === 'raw' || format === 'qcow2' ? [] : [nonRawError(path, format).message];
    const imageUse = imageUsage(path);
    if (geo.kind === 'block') {
      const usage = deviceUsage(path);
      const rec = recommend({
        kind: 'block',
        filesystem: null,
        sparse: false,
        allocation: null,
        directIo: true,
        logicalBlockSize: geo.logicalBlockSize,
      });
      const inUse = usage.inUse || imageUse.inUse;
      const image = await diskImage(path, format, geo.sizeBytes, null);
      const inspection: Inspection = {
        path,
        kind: 'block',
        sizeBytes: geo.sizeBytes,
        logicalBlockSize: geo.logicalBlockSize,
        sparse: false,
        allocation: null,
        filesystem: null,
        directIo: directIoWorks(path),
        format,
        inUse,
        usage,
        imageUse,
        safeForNative: !inUse,
        recommended: rec.recommended,
        reasons: [...formatReasons, ...(image?.notes ?? []), ...imageUse.reasons, ...usage.reasons, ...rec.reasons],
        ...(image ? { image } : {}),
      };
      if (opts.probe)
        inspection.probe = {
          skipped: 'The nowait probe is for image files: on a block device nowait stays off, and the probe never writes to a device.',
        };
      return inspection;
    }
    const filesystem = filesystemName(path, st);
    const h = holes(fd);
    const e = extents(fd);
    // FIEMAP when the filesystem has it: SEEK_HOLE on ext4 counts unwritten (fallocated) extents as holes.
    const allocation: Allocation = {
      allocatedBytes: h.allocatedBytes,
      seekHole: h.seekHole,
      holeBytes: e.supported ? e.holeBytes : h.holeBytes,
      holeCount: e.supported ? e.holeCount : h.holeCount,
      fiemap: e.supported,
      unwrittenExtents: e.unwrittenExtents,
      unwrittenBytes: e.unwrittenBytes,
    };
    const sparse = e.supported || h.seekHole ? allocation.holeBytes > 0 : h.allocatedBytes < h.sizeBytes;
    const directIo = directIoWorks(path);
    const logicalBlockSize = fileLogicalBlockSize(path, st, directIo);
    let probe: FilesystemProbe | { skipped: string } | undefined;
    if (opts.probe) {
      probe = directIo
        ? await probeFilesystem(path, filesystem, fd)
        : { skipped: `${filesystem} does not support O_DIRECT here, so native AIO (and its nowait mode) cannot be used.` };
    }
    const rec = recommend({
      kind: 'file',
      filesystem,
      sparse,
      allocation,
      directIo,
      logicalBlockSize,
      ...(probe && 'verdict' in probe ? { probe } : {}),
    });
    const image = await diskImage(path, format, geo.sizeBytes, h.allocatedBytes);
    if (format === 'qcow2' && rec.safeForNative) {
      // A qcow2 grows as the guest writes new clusters, but Spindle's driver never lets a data
      // write extend it: it grows the file ahead in chunks (write-zeroes, off io_submit) first.
      rec.reasons.push(
        "qcow2: Spindle's driver grows the file ahead in chunks (fallocate, never inside io_submit) before new clusters are written, so a growing image stays safe for native.",
      );
    }
    return {
      path,
      kind: 'file',
      sizeBytes: geo.sizeBytes,
      logicalBlockSize,
      sparse,
      allocation,
      filesystem,
      directIo,
      format,
      inUse: imageUse.inUse,
      usage: null,
      imageUse,
      safeForNative: rec.safeForNative,
      recommended: rec.recommended,
      reasons: [...formatReasons, ...(image?.notes ?? []), ...imageUse.reasons, ...rec.reasons],
      ...(probe ? { probe } : {}),
      ...(image ? { image } : {}),
    };
  } finally {
    closeSync(fd);
  }
}
