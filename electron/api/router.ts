// The transport-agnostic API router: validates every request with the contract's schemas,
// canonicalises paths and dispatches to the VM manager and the other layers. What it throws is
// turned into a wire error by the one mapper in errors.ts; bugs are not wrapped here.
import { realpathSync } from 'node:fs';
import { basename, dirname, join, normalize } from 'node:path';
import type { z } from 'zod';
import {
  methods,
  topics,
  type AppInfo,
  type FileAdvice,
  type HostDevice,
  type ImportProgress,
  type LoginAutostart,
  type MethodName,
  type ParsedParams,
  type Result,
  type ScratchDisk,
  type TopicName,
} from '../shared/api.js';
import { SpindleError, errnoOf } from '../shared/errors.js';
import type { VmManager } from '../host/vm/manager.js';
import type { DiskFormat } from '../shared/model.js';
import type { StatsSampler } from '../host/stats/sampler.js';
import type { ApiHandler } from './session.js';
import { asUserError } from './errors.js';

/** The layers the router dispatches to; a missing optional one answers with a clear error. */
export interface RouterBackend {
  manager: VmManager;
  sampler: StatsSampler;
  appInfo(): Promise<AppInfo> | AppInfo;
  hostDevices?: () => Promise<HostDevice[]>;
  advisor?: {
    inspect(path: string): Promise<FileAdvice>;
    probe(path: string): Promise<FileAdvice>;
    createImage(
      path: string,
      sizeBytes: number,
      preallocate: boolean,
      qcow2?: { format: DiskFormat; clusterSizeBytes?: number; backing?: string },
    ): Promise<FileAdvice>;
    preallocate(path: string): Promise<FileAdvice>;
    /** qemu-img convert into a new image; `onProgress` per percentage. */
    importImage?(source: string, dest: string, format: DiskFormat): Promise<FileAdvice>;
    /** Returns an unsubscribe function. */
    onImportProgress?(listener: (p: ImportProgress) => void): () => void;
  };
  /** "Start Spindle at login" (host/app/login-autostart.ts). */
  loginAutostart?: { get(): LoginAutostart; set(enabled: boolean): LoginAutostart };
  /** The scratch disk; `create` makes it when missing. */
  scratch?: (create: boolean) => ScratchDisk | Promise<ScratchDisk>;
  bench?: {
    start(input: ParsedParams<'bench.start'>): Promise<string>;
    cancel(benchId: string): Promise<void>;
    result(benchId: string): Promise<Result<'bench.result'>>;
    /** Completed comparisons of the target's file or device, newest first. */
    history(target: ParsedParams<'bench.history'>['target']): Promise<Result<'bench.result'>[]>;
    /** Returns an unsubscribe function. */
    onProgress(benchId: string, listener: (e: unknown) => void): () => void;
  };
}

/** A zod failure as one sentence naming the field. */
export function describeInvalid(what: string, error: z.ZodError): SpindleError {
  const parts = error.issues.slice(0, 3).map((i) => {
    const where = i.path.length ? i.path.join('.') : 'request';
    return `${where}: ${i.message}`;
  });
  return new SpindleError('INVALID_ARGUMENT', `Invalid ${what} (${parts.join('; ')}).`);
}

const PATH_KEYS = new Set(['path', 'kernel', 'initrd', 'source', 'dest', 'backing']);

/** Resolves symlinks and '..' so checks (in use? root device?) see the real file. A path that
 *  does not exist yet keeps its name under its parent's real path. */
export function canonicalPath(p: string): string {
  try {
    return realpathSync(p);
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') return normalize(p);
    try {
      return join(realpathSync(dirname(p)), basename(p));
    } catch {
      return normalize(p);
    }
  }
}

function canonicalise<T>(value: T): T {
  if (Array.isArray(value)) return value.map(canonicalise) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = PATH_KEYS.has(k) && typeof v === 'string' ? canonicalPath(v) : canonicalise(v);
    return out as T;
  }
  return value;
}

const pending = (what: string) => new SpindleError('INTERNAL', `${what} is not available in this build of Spindle yet.`);

export function createRouter(backend: RouterBackend): ApiHandler {
  const { manager, sampler } = backend;

  const handlers: { [M in MethodName]: (p: ParsedParams<M>) => Promise<Result<M>> | Result<M> } = {
    'app.info': () => backend.appInfo(),
    'vm.list': () => manager.list(),
    'vm.get': (p) => manager.get(p.id),
    'vm.create': (p) => manager.create(p),
    'vm.update': (p) => manager.update(p.id, p.patch),
    'vm.media': (p) => manager.media(p.id, p.drive, p.path),
    'vm.delete': async (p) => ({ ok: true as const, ...(await manager.delete(p.id, { deleteDisks: p.deleteDisks ?? false })) }),
    'vm.start': (p) => manager.start(p.id, { allowBaseWrites: p.allowBaseWrites ?? false }),
    'vm.clone': (p) => manager.clone(p.id, p.name, p.linked),
    'snapshot.list': (p) => manager.snapshots(p.id),
    'snapshot.create': (p) => manager.snapshot(p.id, 'create', p.name),
    'snapshot.revert': (p) => manager.snapshot(p.id, 'revert', p.name),
    'snapshot.delete': (p) => manager.snapshot(p.id, 'delete', p.name),
    'app.autostart.get': () => need(backend.loginAutostart, 'Start at login').get(),
    'app.autostart.set': (p) => need(backend.loginAutostart, 'Start at login').set(p.enabled),
    'vm.shutdown': async (p) => {
      // The manager warns (a VM-wide disk event) when the guest ignored the power button and it forces the VM off.
      let forced = false;
      const watch = (e: { vmId: string | null; diskId: string; level: string; message: string }) => {
        if (e.vmId === p.id && e.diskId === '' && e.level === 'warning' && /did not power off/.test(e.message)) forced = true;
      };
      manager.on('disk', watch);
      try {
        const info = await manager.shutdown(p.id, p.timeoutMs);
        return forced ? { ...info, forced } : info;
      } finally {
        manager.off('disk', watch);
      }
    },
    'vm.forceOff': (p) => manager.forceOff(p.id),
    'vm.pause': (p) => manager.pause(p.id),
    'vm.resume': (p) => manager.resume(p.id),
    'vm.reset': (p) => manager.reset(p.id),
    'disk.attach': (p) => manager.attachDisk(p.vmId, p.disk),
    'disk.detach': (p) => manager.detachDisk(p.vmId, p.diskId),
    'disk.set': (p) => manager.setDisk(p.vmId, p.diskId, p.patch),
    'disk.resize': (p) => manager.resizeDisk(p.vmId, p.diskId, p.sizeBytes),
    'host.devices': async () => {
      if (!backend.hostDevices) throw pending('Host device discovery');
      return { devices: await backend.hostDevices() };
    },
    'advisor.inspect': (p) => need(backend.advisor, 'The file advisor').inspect(p.path),
    'advisor.probe': (p) => need(backend.advisor, 'The file advisor').probe(p.path),
    'advisor.createImage': (p) =>
      need(backend.advisor, 'Creating images').createImage(p.path, p.sizeBytes, p.preallocate, {
        format: p.format ?? 'raw',
        ...(p.clusterSizeBytes !== undefined ? { clusterSizeBytes: p.clusterSizeBytes } : {}),
        ...(p.backing !== undefined ? { backing: p.backing } : {}),
      }),
    'image.import': (p) => need(backend.advisor?.importImage, 'Importing images')(p.source, p.dest, p.format),
    'advisor.preallocate': (p) => need(backend.advisor, 'Preallocation').preallocate(p.path),
    'scratch.get': (p) => need(backend.scratch, 'The scratch disk')(p.create ?? false),
    'stats.history': (p) => ({ ticks: sampler.history(p.sinceMs) }),
    'bench.start': async (p) => ({ benchId: await need(backend.bench, 'The aio comparison').start(p) }),
    'bench.cancel': async (p) => (await need(backend.bench, 'The aio comparison').cancel(p.benchId), { ok: true as const }),
    'bench.result': (p) => need(backend.bench, 'The aio comparison').result(p.benchId),
    'bench.history': async (p) => ({ runs: await need(backend.bench, 'The aio comparison').history(p.target) }),
    'console.serialInput': (p) => {
      const data = Buffer.from(p.dataBase64, 'base64');
      if (data.length > 65536) throw new SpindleError('INVALID_ARGUMENT', 'Console input is limited to 64 KiB per message.');
      manager.serialInput(p.vmId, data);
      return { ok: true as const };
    },
    'console.serialBacklog': (p) => ({ dataBase64: manager.serialBacklog(p.id).toString('base64') }),
    'console.vnc': (p) => {
      const info = manager.get(p.id);
      if (info.config.display !== 'vnc') return { available: false, reason: `VM '${info.config.name}' has no display (display: none).` };
      if (!manager.vncSocketPath(p.id)) return { available: false, reason: `VM '${info.config.name}' is not running.` };
      return { available: true };
    },
  };

  return {
    async call(method: string, params: unknown): Promise<unknown> {
      if (!Object.hasOwn(methods, method))
        throw new SpindleError('INVALID_ARGUMENT', `There is no API method '${String(method).slice(0, 60)}'.`);
      const m = method as MethodName;
      const parsed = methods[m].params.safeParse(params ?? {});
      if (!parsed.success) throw describeInvalid(`parameters for ${m}`, parsed.error);
      const handler = handlers[m] as (p: unknown) => Promise<unknown> | unknown;
      try {
        return await handler(canonicalise(parsed.data));
      } catch (err) {
        // A missing file or a permission refused is the user's to fix; a bug stays as it is, so
        // the transport logs it and hides its text (errors.ts).
        throw asUserError(err) ?? err;
      }
    },

    subscribe(topic: string, params: unknown, listener: (event: unknown) => void): () => void {
      if (!Object.hasOwn(topics, topic))
        throw new SpindleError('INVALID_ARGUMENT', `There is no event stream '${String(topic).slice(0, 60)}'.`);
      const t = topic as TopicName;
      const parsed = topics[t].params.safeParse(params ?? {});
      if (!parsed.success) throw describeInvalid(`parameters for the ${t} stream`, parsed.error);
      const on = <A extends unknown[]>(emitter: NodeJS.EventEmitter, name: string, fn: (...a: A) => void) => {
        emitter.on(name, fn as (...a: unknown[]) => void);
        return () => void emitter.off(name, fn as (...a: unknown[]) => void);
      };
      switch (t) {
        case 'vms':
          return on(manager, 'vm', listener);
        case 'disk.events':
          return on(manager, 'disk', listener);
        case 'stats':
          return on(sampler, 'tick', listener);
        case 'console.serial': {
          const vmId = (parsed.data as { id: string }).id;
          manager.get(vmId); // NOT_FOUND for an unknown VM
          return on(manager, 'serial', (e: { vmId: string; data: Buffer }) => {
            if (e.vmId === vmId) listener({ vmId, dataBase64: e.data.toString('base64') });
          });
        }
        case 'image.progress':
          return need(backend.advisor?.onImportProgress, 'Importing images')(listener);
        case 'bench.progress':
          return need(backend.bench, 'The aio comparison').onProgress((parsed.data as { benchId: string }).benchId, listener);
      }
    },
  };
}

function need<T>(layer: T | undefined, what: string): T {
  if (!layer) throw pending(what);
  return layer;
}
