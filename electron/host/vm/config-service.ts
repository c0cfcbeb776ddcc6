// VM configs over the store: a new VM, a changed one, a deleted one, each checked first (unique
// names, boot files that are files, OVMF for UEFI, disks that may be opened and that the host
// does not use, aio/cache pairs that work). Knows nothing of running VMs: the manager says
// which changes a running VM allows.
import { existsSync, rmSync, copyFileSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type DiskInput, type DiskPatch, type ParsedParams } from '../../shared/api.js';
import { VM_CONFIG_VERSION, type DiskConfig, type VmConfig } from '../../shared/model.js';
import { defaultModes, modeConflict } from '../../shared/modes.js';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { diskKindOf, checkDeviceAccess, deviceUsage } from '../../dataplane/block/host-devices.js';
import { findOvmf } from './launcher.js';
import { tryLock } from './lock-file.js';
import type { VmStore } from './store.js';

/** Why the host's use of a block device (mounted, held, swap, carries /, opened exclusively) forbids giving it to a VM, or null. */
export function hostDeviceRefusal(path: string): string | null {
  const usage = deviceUsage(path);
  return usage.inUse ? usage.reasons.join(' ') : null;
}

const NO_OVMF = 'UEFI needs the OVMF firmware, which is not installed (Debian package ovmf).';

export class VmConfigService {
  constructor(
    private readonly store: VmStore,
    private readonly opts: { deviceRefusal?: (path: string) => string | null; nvramDir?: string } = {},
  ) {}

  /** The stored config of VM `id`. */
  stored(id: string): VmConfig {
    const found = this.store.loadAll().vms.find((v) => v.id === id);
    if (!found) throw new SpindleError('NOT_FOUND', `There is no VM with id '${id}'.`);
    return found;
  }

  create(input: ParsedParams<'vm.create'>): VmConfig {
    this.store.refuseTakenName(input.name);
    if (input.firmware === 'uefi' && !findOvmf()) throw new SpindleError('INVALID_ARGUMENT', NO_OVMF);
    this.checkBootFiles(input.boot);
    const disks: DiskConfig[] = [];
    for (const d of input.disks) disks.push(this.prepareDisk(d, disks, undefined));
    const id = this.store.newId(input.name);
    const config: VmConfig = {
      version: VM_CONFIG_VERSION,
      id,
      name: input.name,
      cpus: input.cpus,
      memoryMiB: input.memoryMiB,
      firmware: input.firmware,
      boot: input.boot,
      disks,
      network: input.network,
      display: input.display,
      createdAt: new Date().toISOString(),
    };
    this.store.create(config);
    return config;
  }

  /** The config after `patch`, checked and stored. `running`: only a rename is allowed. */
  update(config: VmConfig, patch: ParsedParams<'vm.update'>['patch'], running: boolean): VmConfig {
    const keys = Object.keys(patch).filter((k) => (patch as Record<string, unknown>)[k] !== undefined);
    if (patch.name !== undefined) this.store.refuseTakenName(patch.name, config.id);
    if (running && keys.some((k) => k !== 'name')) {
      throw new SpindleError(
        'CONFLICT',
        `VM '${config.name}' is running; shut it down to change ${keys.filter((k) => k !== 'name').join(', ')}.`,
      );
    }
    if (patch.firmware === 'uefi' && !findOvmf()) throw new SpindleError('INVALID_ARGUMENT', NO_OVMF);
    if (patch.boot) this.checkBootFiles(patch.boot);
    const next: VmConfig = { ...config, ...Object.fromEntries(keys.map((k) => [k, (patch as Record<string, unknown>)[k]])) };
    this.store.update(next);
    return next;
  }

  /** Deletes VM `config`'s files while holding its run lock; `refuse` runs when another process holds it. */
  delete(config: VmConfig, refuse: () => void): void {
    // Held while the files go, so no other process starts the VM meanwhile.
    const lockPath = this.store.runLockPath(config.id, { create: true });
    const lock = tryLock(lockPath);
    if (!lock) refuse();
    try {
      this.store.delete(config.id);
      rmSync(lockPath, { force: true });
    } finally {
      lock?.release();
    }
  }

  save(config: VmConfig): void {
    this.store.update(config);
  }

  /** Each boot file must be a file QEMU can read as one (an ISO may also be a CD drive's block device). */
  checkBootFiles(boot: VmConfig['boot']): void {
    const files: [string, string][] =
      boot.kind === 'kernel'
        ? [['kernel', boot.kernel], ...(boot.initrd ? [['initrd', boot.initrd] as [string, string]] : [])]
        : boot.kind === 'iso'
          ? [['ISO image', boot.path]]
          : [];
    for (const [what, f] of files) {
      let st;
      try {
        st = statSync(f);
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') throw new SpindleError('NOT_FOUND', `The boot file ${f} does not exist.`, 'ENOENT');
        throw new SpindleError('PERMISSION_DENIED', `The ${what} ${f} cannot be read: ${(err as Error).message}.`, errnoOf(err));
      }
      if (st.isDirectory())
        throw new SpindleError('IS_DIRECTORY', `The ${what} ${f} is a directory; give the ${what} file itself.`, 'EISDIR');
      if (!st.isFile() && !(boot.kind === 'iso' && st.isBlockDevice())) {
        throw new SpindleError(
          'INVALID_ARGUMENT',
          `The ${what} ${f} is not a regular file${boot.kind === 'iso' ? ' or a CD/DVD drive' : ''}.`,
        );
      }
    }
  }

  /** A full disk config from user input: kind detected, defaults applied, conflicts refused. */
  prepareDisk(input: DiskInput, existing: DiskConfig[], busyElsewhere: string | undefined): DiskConfig {
    const kind = diskKindOf(input.path);
    const readOnly = input.readOnly ?? false;
    if (existing.some((d) => d.path === input.path)) throw new SpindleError('CONFLICT', `${input.path} is already a disk of this VM.`);
    if (busyElsewhere) throw new SpindleError('DEVICE_BUSY', busyElsewhere);
    this.checkUsable(input.path, kind, readOnly);
    const def = defaultModes(kind);
    const aio = input.aio ?? (input.cache && modeConflict(def.aio, input.cache) ? 'threads' : def.aio);
    const cache = input.cache ?? (input.aio && modeConflict(input.aio, def.cache) ? 'none' : def.cache);
    const conflict = modeConflict(aio, cache);
    if (conflict) throw new SpindleError('UNSUPPORTED_MODE', conflict);
    const id = nextDiskId(existing);
    return {
      id,
      path: input.path,
      kind,
      aio,
      cache,
      nowait: input.nowait ?? 'off',
      readOnly,
      queues: input.queues ?? 1,
      serial: input.serial ?? `spindle-${id}`,
      enospc: input.enospc ?? 'stop',
      ...(input.limits && Object.keys(input.limits).length > 0 ? { limits: input.limits } : {}),
    };
  }

  /** Throws unless we may open `path` as the disk server will and, for a host device, the host does not use it. */
  checkUsable(path: string, kind: 'file' | 'block', readOnly: boolean): void {
    checkDeviceAccess(path, { write: !readOnly });
    if (kind === 'block') {
      const why = (this.opts.deviceRefusal ?? hostDeviceRefusal)(path);
      if (why) throw new SpindleError('DEVICE_BUSY', why);
    }
  }

  /** Disk `disk` with `patch` applied; an aio/cache pair that does not work is refused. */
  patchDisk(disk: DiskConfig, patch: DiskPatch): DiskConfig {
    const next: DiskConfig = {
      ...disk,
      ...(patch.aio !== undefined ? { aio: patch.aio } : {}),
      ...(patch.cache !== undefined ? { cache: patch.cache } : {}),
      ...(patch.nowait !== undefined ? { nowait: patch.nowait } : {}),
      ...(patch.readOnly !== undefined ? { readOnly: patch.readOnly } : {}),
      ...(patch.queues !== undefined ? { queues: patch.queues } : {}),
      ...(patch.enospc !== undefined ? { enospc: patch.enospc } : {}),
      ...(patch.limits !== undefined ? { limits: patch.limits } : {}),
    };
    const conflict = modeConflict(next.aio, next.cache);
    if (conflict) throw new SpindleError('UNSUPPORTED_MODE', conflict);
    return next;
  }

  /** Checks every disk of `config` before a start (modes, access, host use); `busy` names another user. */
  checkStartable(config: VmConfig, busy: (path: string) => string | undefined): void {
    this.checkBootFiles(config.boot);
    for (const d of config.disks) {
      const conflict = modeConflict(d.aio, d.cache);
      if (conflict) throw new SpindleError('UNSUPPORTED_MODE', `Disk ${d.id}: ${conflict}`);
      const other = busy(d.path);
      if (other) throw new SpindleError('DEVICE_BUSY', other);
      this.checkUsable(d.path, diskKindOf(d.path), d.readOnly);
    }
  }

  /** OVMF code and this VM's own variable store (copied from the template on first boot). */
  firmwareFor(config: VmConfig): { code: string; vars: string } {
    const ovmf = findOvmf();
    if (!ovmf)
      throw new SpindleError(
        'INVALID_ARGUMENT',
        `VM '${config.name}' uses UEFI, but the OVMF firmware is not installed (Debian package ovmf).`,
      );
    const dir = this.opts.nvramDir ?? join(this.store.dir, '..', 'nvram');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const vars = join(dir, `${config.id}_VARS.fd`);
    if (!existsSync(vars)) copyFileSync(ovmf.varsTemplate, vars);
    return { code: ovmf.code, vars };
  }
}

function nextDiskId(existing: DiskConfig[]): string {
  const used = new Set(existing.map((d) => d.id));
  for (let i = 0; ; i++) if (!used.has(`d${i}`)) return `d${i}`;
}
