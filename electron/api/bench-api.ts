// The API's aio comparison (bench.start / bench.cancel / bench.result and the bench.progress
// topic): picks and checks the target (the scratch disk, a path, or a disk of a stopped VM; a disk
// a running VM uses is refused with the reason), runs electron/host/bench/compare.ts one comparison at a
// time, keeps the last results in memory, and each completed one per disk in the data directory
// (bench.history), so a reload or restart keeps what the user measured.
import { EventEmitter } from 'node:events';
import { closeSync, openSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { BenchRow, BenchVariant, ParsedParams, Result, TopicEvent } from '../shared/api.js';
import type { RouterBackend } from './router.js';
import { SpindleError, errnoOf } from '../shared/errors.js';
import { hostDeviceRefusal, type VmManager } from '../host/vm/manager.js';
import { measuredByBench, type DiskLease, type DiskLeases } from '../host/disks/disk-leases.js';
import { createScratchDisk, scratchInfo } from '../host/vm/scratch.js';
import { geometry } from '../dataplane/native/os.js';
import { PathRecords } from './path-records.js';
import { dataDir } from '../host/vm/paths.js';
import {
  DEFAULT_BYTES_PER_RUN,
  POST_WORKLOADS,
  checkVariants,
  isSparseFile,
  runComparison,
  regionBytes,
  type Workload,
} from '../host/bench/compare.js';
import { RegionBackup } from '../host/bench/region-backup.js';

type Progress = TopicEvent<'bench.progress'>;
type BenchResult = Result<'bench.result'>;

interface BenchRun {
  id: string;
  result: BenchResult;
  progress: Progress;
  abort: AbortController;
  finished: Promise<void>;
  events: EventEmitter<{ progress: [Progress] }>;
}

const KEEP_RESULTS = 20;
/** Completed comparisons kept per disk. */
const KEEP_HISTORY = 10;

/** Bytes of a file or block device (BLKGETSIZE64 for a device). */
function sizeOf(path: string): number {
  const fd = openSync(path, 'r');
  try {
    return geometry(fd).sizeBytes;
  } finally {
    closeSync(fd);
  }
}

/** Without explicit variants: the given modes, with native+nowait as its own row right after native. */
export function variantsOf(input: ParsedParams<'bench.start'>): BenchVariant[] {
  if (input.variants) return input.variants;
  return input.modes.flatMap((aio): BenchVariant[] =>
    aio === 'native'
      ? [
          { aio, nowait: false },
          { aio, nowait: true },
        ]
      : [{ aio, nowait: false }],
  );
}

/** Why a running VM keeps this path from being measured (its lease, host/disks/disk-leases.ts), or null. */
function runningUser(leases: DiskLeases, path: string): string | null {
  const holder = leases.holder(path);
  if (holder?.kind !== 'vm') return null;
  return `${path} is disk ${holder.diskId} of the VM '${holder.vmName()}', which is ${holder.vmState()}: the comparison writes to the disk, so stop the VM first.`;
}

export type BenchLayer = NonNullable<RouterBackend['bench']> & {
  /** Cancels the comparison in progress, if any, and waits until its disk server stopped (backend close). */
  cancelAll(): Promise<void>; /** Why `path` must not be given to a VM now (a comparison is writing to it), or null. For the VM
   *  manager's start/attach checks: without it a VM could start on a disk being measured. */
  busyReason(path: string): string | null;
};

export function createBenchLayer(manager: VmManager, env: NodeJS.ProcessEnv = process.env): BenchLayer {
  const runs = new Map<string, BenchRun>();
  const history = new PathRecords<BenchResult[]>(join(dataDir(env), 'compare'));
  let active: BenchRun | null = null;
  /** The measured disk's lease while a comparison runs. */
  let lease: DiskLease | null = null;

  function resolveTarget(input: ParsedParams<'bench.start'>): { path: string; scratch: boolean; vmDisk: boolean } {
    const t = input.target;
    if (t.kind === 'scratch') return { path: createScratchDisk(env).path, scratch: true, vmDisk: false };
    if (t.kind === 'path') return { path: t.path, scratch: false, vmDisk: false };
    const vm = manager.get(t.vmId);
    const disk = vm.config.disks.find((d) => d.id === t.diskId);
    if (!disk) throw new SpindleError('NOT_FOUND', `The VM '${vm.config.name}' has no disk ${t.diskId}.`);
    if (vm.state !== 'stopped' && vm.state !== 'crashed') {
      throw new SpindleError(
        'DEVICE_BUSY',
        `Disk ${disk.id} of '${vm.config.name}' is in use: the VM is ${vm.state}. The comparison writes to the disk, so stop the VM first.`,
      );
    }
    return { path: disk.path, scratch: false, vmDisk: true };
  }

  function checkPath(path: string): void {
    let st;
    try {
      st = statSync(path);
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') throw new SpindleError('NOT_FOUND', `There is no file or device ${path}.`, 'ENOENT');
      throw err;
    }
    if (st.isDirectory()) throw new SpindleError('IS_DIRECTORY', `${path} is a directory: choose an image file or a block device.`);
    if (!st.isFile() && !st.isBlockDevice()) throw new SpindleError('NOT_A_DISK', `${path} is neither an image file nor a block device.`);
    if (manager.leases.holder(path)?.kind === 'bench')
      throw new SpindleError('CONFLICT', 'A comparison is already running: wait for it or cancel it first.');
    const user = runningUser(manager.leases, path);
    if (user) throw new SpindleError('DEVICE_BUSY', user);
    if (st.isBlockDevice()) {
      const why = hostDeviceRefusal(path);
      if (why) throw new SpindleError('DEVICE_BUSY', why);
    }
  }

  function emit(run: BenchRun, p: Partial<Progress>): void {
    const { row: _row, ...prev } = run.progress; // a row belongs to the one event that finished it
    run.progress = { ...prev, ...p, benchId: run.id, state: run.result.state };
    run.events.emit('progress', run.progress);
  }

  return {
    async start(input) {
      if (active) throw new SpindleError('CONFLICT', 'A comparison is already running: wait for it or cancel it first.');
      const target = resolveTarget(input);
      checkPath(target.path);
      const variants = variantsOf(input);
      checkVariants(variants, input.cache);
      const workloads: Workload[] = input.workloads ?? [...POST_WORKLOADS];
      const bytesPerRun = input.bytesPerRun ?? DEFAULT_BYTES_PER_RUN;
      const iodepth = input.iodepth ?? 1;
      const freshSparseWrites = target.scratch && isSparseFile(target.path);
      const preserve = !target.scratch;
      const id = randomUUID();
      const repeats = input.repeats ?? 1;
      const perRepeat = variants.length * workloads.length;
      const total = repeats * perRepeat;
      const t = input.target;
      const info = {
        disk: target.path,
        ...(t.kind === 'vmDisk' ? { vmId: t.vmId, diskId: t.diskId } : {}),
        sizeBytes: sizeOf(target.path),
        startedAt: new Date().toISOString(),
        kernel: release(),
      };
      const run: BenchRun = {
        id,
        result: {
          benchId: id,
          state: 'running',
          rows: [],
          settings: {
            path: target.path,
            cache: input.cache,
            directIo: input.cache === 'none' || input.cache === 'directsync',
            iodepth,
            bytesPerRun,
            freshSparseWrites,
            preserved: preserve,
          },
          info,
        },
        progress: { benchId: id, state: 'running', done: 0, total, fraction: 0 },
        abort: new AbortController(),
        finished: Promise.resolve(),
        events: new EventEmitter(),
      };
      // The lease is taken before the region is saved, so no VM takes the disk meanwhile.
      lease = manager.leases.claim(target.path, { kind: 'bench' });
      let backup: RegionBackup | null;
      try {
        backup = preserve
          ? await RegionBackup.save(
              target.path,
              Math.max(...workloads.map((w) => regionBytes(w.recordBytes, bytesPerRun, Number.MAX_SAFE_INTEGER))),
              dataDir(env),
            )
          : null;
      } catch (err) {
        lease.release();
        lease = null;
        throw err;
      }
      active = run;
      runs.set(id, run);
      for (const old of [...runs.keys()].slice(0, Math.max(0, runs.size - KEEP_RESULTS))) runs.delete(old);
      run.finished = (async () => {
        try {
          // Each repeat measures the whole table again, so a cell's spread shows how steady it is.
          for (let r = 0; r < repeats; r++) {
            const base = r * perRepeat;
            const tag = repeats > 1 ? ` (repeat ${r + 1} of ${repeats})` : '';
            await runComparison({
              path: target.path,
              variants,
              workloads,
              cache: input.cache,
              bytesPerRun,
              iodepth,
              freshSparseWrites,
              signal: run.abort.signal,
              onStep: (s) =>
                emit(run, {
                  done: base + s.index,
                  fraction: (base + s.index) / total,
                  step: `${s.label}${tag}`,
                  current: { mode: s.variant.aio, op: s.workload.op, recordBytes: s.workload.recordBytes, nowait: s.variant.nowait },
                }),
              onRow: (row: BenchRow, s) => {
                const tagged = repeats > 1 ? { ...row, repeat: r } : row;
                run.result.rows.push(tagged);
                emit(run, { done: base + s.index + 1, fraction: (base + s.index + 1) / total, row: tagged });
              },
            });
          }
          run.result.state = 'done';
        } catch (err) {
          const cancelled = err instanceof SpindleError && err.code === 'CANCELLED';
          run.result.state = cancelled ? 'cancelled' : 'failed';
          if (!cancelled) run.result.error = err instanceof SpindleError ? err.message : `The comparison failed: ${(err as Error).message}`;
        } finally {
          try {
            await backup?.restore();
          } catch (err) {
            run.result.state = 'failed';
            run.result.error = `${run.result.error ? `${run.result.error} ` : ''}${(err as Error).message}`;
          }
          active = null;
          lease?.release();
          lease = null;
          if (run.result.state === 'done') {
            try {
              history.save(target.path, [structuredClone(run.result), ...(history.load(target.path) ?? [])].slice(0, KEEP_HISTORY));
            } catch (err) {
              run.result.error = `The results could not be kept for later: ${(err as Error).message}`;
            }
          }
          const { row: _row, current: _current, ...rest } = run.progress;
          run.progress = rest as Progress;
          emit(run, {
            step: run.result.state === 'done' ? 'done' : run.result.state,
            ...(run.result.error ? { error: run.result.error } : {}),
          });
        }
      })();
      return id;
    },

    async cancel(benchId) {
      const run = runs.get(benchId);
      if (!run) throw new SpindleError('NOT_FOUND', `There is no comparison ${benchId.slice(0, 60)}.`);
      run.abort.abort();
      await run.finished; // the disk server is stopped and the region restored when this resolves
    },

    async result(benchId) {
      const run = runs.get(benchId);
      if (!run) throw new SpindleError('NOT_FOUND', `There is no comparison ${benchId.slice(0, 60)}.`);
      return structuredClone(run.result);
    },

    async history(t) {
      let path: string;
      if (t.kind === 'scratch') path = scratchInfo(env).path;
      else if (t.kind === 'path') path = t.path;
      else {
        const vm = manager.get(t.vmId);
        const disk = vm.config.disks.find((d) => d.id === t.diskId);
        if (!disk) throw new SpindleError('NOT_FOUND', `The VM '${vm.config.name}' has no disk ${t.diskId}.`);
        path = disk.path;
      }
      return history.load(path) ?? [];
    },

    busyReason(path) {
      return manager.leases.holder(path)?.kind === 'bench' ? measuredByBench(path) : null;
    },

    async cancelAll() {
      const run = active;
      if (!run) return;
      run.abort.abort();
      await run.finished;
    },

    onProgress(benchId, listener) {
      const run = runs.get(benchId);
      if (!run) throw new SpindleError('NOT_FOUND', `There is no comparison ${benchId.slice(0, 60)}.`);
      run.events.on('progress', listener);
      // A subscriber that arrives late still learns where the run is (and that it ended).
      const last = run.progress;
      queueMicrotask(() => {
        if (run.events.listeners('progress').includes(listener)) listener(last);
      });
      return () => void run.events.off('progress', listener);
    },
  };
}
