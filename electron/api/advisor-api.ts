// The advisor and host-device discovery (electron/dataplane/block, electron/host/advisor) as the API's `host.devices` and
// `advisor.*` methods: small adapters from the block layer's types to the contract's, which the
// renderer consumes (flat device list, nowait as a mode, reasons as notes).
import { EventEmitter } from 'node:events';
import { mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { FileAdvice, HostDevice, ProbeSummary } from '../shared/api.js';
import type { RouterBackend } from './router.js';
import { inspect, type Inspection } from '../host/advisor/advisor.js';
import { listHostDevices, type HostDevice as BlockHostDevice } from '../dataplane/block/host-devices.js';
import { detectContent, nonRawError } from '../dataplane/block/format-detect.js';
import { createDiskImage, createImage, preallocateImage } from '../host/images/create-image.js';
import { importImage } from '../host/images/import-image.js';
import { SpindleError } from '../shared/errors.js';
import { dataDir } from '../host/vm/paths.js';
import { PathRecords } from './path-records.js';

/** The file a loop device reads (sysfs), or undefined. */
function loopBackingFile(name: string): string | undefined {
  try {
    return readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Each whole device followed by its partitions, as the contract's flat list. */
export function toApiHostDevices(devices: BlockHostDevice[]): HostDevice[] {
  const out: HostDevice[] = [];
  const add = (d: BlockHostDevice, parent?: BlockHostDevice) => {
    // A loop device (or a partition on one) shows the file behind it.
    const backingFile = d.type === 'loop' ? loopBackingFile(d.name) : parent?.type === 'loop' ? loopBackingFile(parent.name) : undefined;
    out.push({
      path: d.path,
      name: d.name,
      model: d.model,
      sizeBytes: d.sizeBytes,
      rotational: d.rotational,
      removable: d.removable,
      readOnly: d.readOnly,
      partitions: d.partitions.map((p) => p.path),
      mountpoints: d.mountpoints,
      holders: d.holders,
      usable: d.usable,
      ...(d.reason ? { reason: d.reason } : {}),
      type: d.type,
      ...(d.fstype ? { fstype: d.fstype } : {}),
      ...(parent ? { parent: parent.path } : {}),
      ...(backingFile ? { backingFile } : {}),
    });
    for (const p of d.partitions) add(p, d);
  };
  devices.forEach((d) => add(d));
  return out;
}

function toProbeSummary(p: NonNullable<Inspection['probe']>): ProbeSummary {
  if ('skipped' in p) return { measured: false, summary: p.skipped };
  return {
    measured: true,
    summary: p.verdict.summary,
    nowait: p.verdict.nowait,
    nowaitSupported: p.nowaitSupported,
    nowaitWritesHonoured: { ...p.nowaitWrites },
  };
}

export function toFileAdvice(i: Inspection): FileAdvice {
  const a = i.allocation;
  // The app has a Probe button where the CLI has a flag.
  const notes = i.reasons.map((n) =>
    /--probe/.test(n)
      ? 'nowait not measured yet: Probe measures whether this filesystem honours RWF_NOWAIT (native AIO that never blocks).'
      : n,
  );
  if (i.probe && 'skipped' in i.probe) notes.push(i.probe.skipped);
  return {
    path: i.path,
    kind: i.kind,
    sizeBytes: i.sizeBytes,
    ...(a ? { allocatedBytes: a.allocatedBytes, holeBytes: a.holeBytes, holeCount: a.holeCount, unwrittenBytes: a.unwrittenBytes } : {}),
    sparse: i.sparse,
    directIo: i.directIo,
    ...(i.logicalBlockSize !== null ? { logicalBlockSize: i.logicalBlockSize } : {}),
    ...(i.filesystem !== null ? { fsType: i.filesystem } : {}),
    safeForNative: i.safeForNative,
    // The advisor says nowait only when a probe qualified the filesystem; otherwise it stays off.
    recommended: { aio: i.recommended.aio, cache: i.recommended.cache, nowait: i.recommended.nowait ? 'on' : 'off' },
    notes,
    inUse: i.inUse,
    ...(i.usage
      ? {
          usage: {
            mountpoints: i.usage.mountpoints,
            holders: i.usage.holders,
            holdsRoot: i.usage.holdsRoot,
            swap: i.usage.swap,
            exclusiveOpen: i.usage.exclusiveOpen,
          },
        }
      : {}),
    ...(i.probe ? { probe: toProbeSummary(i.probe) } : {}),
    ...(i.image
      ? {
          image: {
            path: i.image.path,
            format: i.image.format,
            virtualSizeBytes: i.image.virtualSizeBytes,
            allocatedBytes: i.image.allocatedBytes,
            clusterSizeBytes: i.image.clusterSizeBytes,
            backingChain: i.image.backingChain,
            dirty: i.image.dirty,
            corrupt: i.image.corrupt,
          },
        }
      : {}),
  };
}

export const hostDevicesLayer: NonNullable<RouterBackend['hostDevices']> = async () => toApiHostDevices(listHostDevices());

/** An image file's format from its header: refuses container formats with a sentence; null for devices and missing paths (inspect says why). */
function fileFormat(path: string): FileAdvice['format'] | null {
  let isFile: boolean;
  try {
    isFile = statSync(path).isFile();
  } catch {
    return null;
  }
  if (!isFile) return null;
  const content = detectContent(path);
  if (content === 'raw' || content === 'iso9660' || content === 'qcow2') return content;
  throw new SpindleError('NOT_A_DISK', nonRawError(path, content).message);
}

/** Whether `dir` is `<data dir>/images`, the directory the app suggests for new images. */
function isImagesDir(dir: string, env: NodeJS.ProcessEnv): boolean {
  const data = dataDir(env);
  const candidates = [join(data, 'images')];
  try {
    candidates.push(join(realpathSync(data), 'images'));
  } catch {
    /* no data directory yet */
  }
  return candidates.includes(dir);
}

type SavedProbe = ProbeSummary & { at: string };

export function createAdvisorLayer(env: NodeJS.ProcessEnv = process.env): NonNullable<RouterBackend['advisor']> {
  // The last probe per file: its verdict stays on the disk's badge across reloads.
  const probes = new PathRecords<SavedProbe>(join(dataDir(env), 'probes'));
  const progress = new EventEmitter();

  async function advise(path: string, opts: { probe?: boolean } = {}): Promise<FileAdvice> {
    const format = fileFormat(path);
    const advice = toFileAdvice(await inspect(path, opts));
    if (format) advice.format = format;
    if (advice.kind !== 'file') return advice;
    if (opts.probe && advice.probe?.measured) {
      const at = new Date().toISOString();
      probes.save(path, { ...advice.probe, at });
      advice.probe = { ...advice.probe, at };
    } else if (!opts.probe) {
      const saved = probes.load(path);
      if (saved) {
        advice.probe = saved;
        advice.recommended = { ...advice.recommended, nowait: advice.directIo && saved.nowait ? 'on' : 'off' };
        advice.notes = advice.notes.filter((n) => !/^nowait not measured/.test(n));
      }
    }
    return advice;
  }

  return {
    inspect: (path) => advise(path),
    probe: (path) => advise(path, { probe: true }),
    async createImage(path, sizeBytes, preallocate, qcow2) {
      // The suggested place for new images: made on first use, private like the rest of the data directory.
      if (isImagesDir(dirname(path), env)) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      if (!qcow2 || qcow2.format === 'raw') createImage(path, sizeBytes, { preallocate });
      else
        await createDiskImage({
          path,
          format: 'qcow2',
          sizeBytes,
          preallocate: preallocate ? 'falloc' : 'off',
          ...(qcow2.clusterSizeBytes !== undefined ? { clusterSize: qcow2.clusterSizeBytes } : {}),
          ...(qcow2.backing !== undefined ? { backing: qcow2.backing } : {}),
        });
      return advise(path);
    },
    async importImage(source, dest, format) {
      if (isImagesDir(dirname(dest), env)) mkdirSync(dirname(dest), { recursive: true, mode: 0o700 });
      await importImage(source, dest, format, (percent) => progress.emit('progress', { source, dest, percent }));
      return advise(dest);
    },
    onImportProgress(listener) {
      progress.on('progress', listener);
      return () => void progress.off('progress', listener);
    },
    async preallocate(path) {
      // Never fill in a container's holes (a qcow2's file grows by its own metadata).
      if (fileFormat(path) === 'qcow2')
        throw new SpindleError(
          'NOT_A_DISK',
          `${path} is a qcow2 image: preallocate it when creating it (--preallocate falloc), not in place.`,
        );
      preallocateImage(path);
      return advise(path);
    },
  };
}
