// The advisor and host-device discovery (electron/block) as the API's `host.devices` and
// `advisor.*` methods: small adapters from the block layer's types to the contract's, which the
// renderer consumes (flat device list, nowait as a mode, reasons as notes).
import type { FileAdvice, HostDevice, ProbeSummary } from './contract.js';
import type { RouterBackend } from './router.js';
import { inspect, type Inspection } from '../block/advisor.js';
import { listHostDevices, type HostDevice as BlockHostDevice } from '../block/host-devices.js';
import { createImage, preallocateImage } from '../block/image.js';

/** Each whole device followed by its partitions, as the contract's flat list. */
export function toApiHostDevices(devices: BlockHostDevice[]): HostDevice[] {
  const out: HostDevice[] = [];
  const add = (d: BlockHostDevice, parent?: string) => {
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
      ...(parent ? { parent } : {}),
    });
    for (const p of d.partitions) add(p, d.path);
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
  const notes = [...i.reasons];
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
    ...(i.usage ? { usage: { mountpoints: i.usage.mountpoints, holders: i.usage.holders, holdsRoot: i.usage.holdsRoot, swap: i.usage.swap, exclusiveOpen: i.usage.exclusiveOpen } } : {}),
    ...(i.probe ? { probe: toProbeSummary(i.probe) } : {}),
  };
}

export const hostDevicesLayer: NonNullable<RouterBackend['hostDevices']> = async () => toApiHostDevices(listHostDevices());

export const advisorLayer: NonNullable<RouterBackend['advisor']> = {
  inspect: async (path) => toFileAdvice(await inspect(path)),
  probe: async (path) => toFileAdvice(await inspect(path, { probe: true })),
  async createImage(path, sizeBytes, preallocate) {
    createImage(path, sizeBytes, { preallocate });
    return toFileAdvice(await inspect(path));
  },
  async preallocate(path) {
    preallocateImage(path);
    return toFileAdvice(await inspect(path));
  },
};
