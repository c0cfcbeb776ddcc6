// VM configs over the store: a new VM, a changed one, a deleted one, each checked first (unique
// names, boot files that are files, OVMF for UEFI, disks that may be opened and that the host
// does not use, aio/cache pairs that work). Knows nothing of running VMs: the manager says
// which changes a running VM allows.
import { existsSync, rmSync, copyFileSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type DiskInput, type DiskPatch, type ParsedParams } from '../../shared/api.js';
import { VM_CONFIG_VERSION, type DiskConfig, type VmConfig } from '../../shared/model.js';
import { diskFormatOf } from './disk-format.js';
import { defaultModes, modeConflict } from '../../shared/modes.js';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { diskKindOf, checkDeviceAccess, deviceUsage } from '../../dataplane/block/host-devices.js';
import { findOvmf, findSecureBootOvmf } from './launcher.js';
import { findSwtpm, NO_SWTPM } from './tpm.js';
import { bridgeRefusal } from './bridge.js';
import { randomBytes } from 'node:crypto';
import { tryLock } from './lock-file.js';
import type { VmStore } from './store.js';

/** Why the host's use of a block device (mounted, held, swap, carries /, opened exclusively) forbids giving it to a VM, or null. */
export function hostDeviceRefusal(path: string): string | null {
  const usage = deviceUsage(path);
  return usage.inUse ? usage.reasons.join(' ') : null;
}

const NO_OVMF = 'UEFI needs the OVMF firmware, which is not installed (Debian package ovmf).';

/** Settings a running VM may change: the name at once, the boot order and CD-ROM list for its next start. */
const LIVE_KEYS = new Set(['autostart', 'name', 'bootOrder']);

/** A locally administered unicast MAC in QEMU's 52:54:00 range. */
export function randomMac(): string {
  return ['52', '54', '00', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export class VmConfigService {
  constructor(
    private readonly store: VmStore,
    private readonly opts: {
      deviceRefusal?: (path: string) => string | null;
      nvramDir?: string;
      /** Why a host bridge cannot be used, or null (default: bridge.ts bridgeRefusal). */
      bridgeRefusal?: (bridge: string) => string | null;
    } = {},
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
    this.checkMedia(input.cdroms);
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
      network: { ...input.network, mac: input.network.mac ?? randomMac() },
      display: input.display,
      createdAt: new Date().toISOString(),
      machine: input.machine ?? 'q35',
      ...(input.secureBoot !== undefined ? { secureBoot: input.secureBoot } : {}),
      ...(input.tpm !== undefined ? { tpm: input.tpm } : {}),
      ...(input.cdroms?.length ? { cdroms: input.cdroms } : {}),
      ...(input.bootOrder?.length ? { bootOrder: input.bootOrder } : {}),
    };
    this.checkMachine(config);
    this.store.create(config);
    return config;
  }

  /** The config after `patch`, checked and stored. `running`: only a rename is allowed. */
  update(config: VmConfig, patch: ParsedParams<'vm.update'>['patch'], running: boolean): VmConfig {
    const keys = Object.keys(patch).filter((k) => (patch as Record<string, unknown>)[k] !== undefined);
    if (patch.name !== undefined) this.store.refuseTakenName(patch.name, config.id);
    const same = (k: string) =>
      JSON.stringify((patch as Record<string, unknown>)[k]) === JSON.stringify((config as Record<string, unknown>)[k]);
    const needStop = keys.filter((k) => !LIVE_KEYS.has(k) && !same(k));
    if (running && needStop.length) {
      throw new SpindleError(
        'CONFLICT',
        `VM '${config.name}' is running; shut it down to change ${needStop.map(describeKey).join(', ')} (a running VM takes a new name or boot order; CD-ROMs change live with vm.media).`,
      );
    }
    if (patch.firmware === 'uefi' && !findOvmf()) throw new SpindleError('INVALID_ARGUMENT', NO_OVMF);
    if (patch.boot) this.checkBootFiles(patch.boot);
    if (patch.cdroms) this.checkMedia(patch.cdroms);
    const next = { ...config, ...Object.fromEntries(keys.map((k) => [k, (patch as Record<string, unknown>)[k]])) } as VmConfig;
    // An empty boot order or CD-ROM list is the default: not stored.
    if (next.bootOrder && !next.bootOrder.length) delete next.bootOrder;
    if (next.cdroms && !next.cdroms.length) delete next.cdroms;
    if (patch.network && !patch.network.mac && config.network.mac) next.network = { ...patch.network, mac: config.network.mac };
    this.checkMachine(next, patch.bootOrder !== undefined);
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
      // The TPM's state belongs to this VM alone (a clone gets a fresh one).
      rmSync(this.tpmStateDir(config.id), { recursive: true, force: true });
      rmSync(lockPath, { force: true });
    } finally {
      lock?.release();
    }
  }

  save(config: VmConfig): void {
    this.store.update(config);
  }

  /** The machine settings fit together and what they need is installed. */
  checkMachine(c: VmConfig, bootOrder = true): void {
    const bad = (why: string) => new SpindleError('INVALID_ARGUMENT', why);
    if (c.secureBoot) {
      if (c.firmware !== 'uefi') throw bad('Secure Boot is part of UEFI: choose UEFI firmware too (--uefi).');
      if (c.machine !== 'q35')
        throw bad('Secure Boot needs the q35 machine type (its firmware runs in SMM, which the pc machine lacks here).');
      if (!findSecureBootOvmf())
        throw bad(
          "Secure Boot needs Debian's OVMF secure-boot firmware (OVMF_CODE_4M.secboot.fd and OVMF_VARS_4M.ms.fd, Debian package ovmf).",
        );
    }
    if (c.tpm && !findSwtpm()) throw bad(NO_SWTPM);
    if (c.network.bridge && c.network.forwards?.length)
      throw bad('Port forwards belong to user networking; a VM on a host bridge is reached at its own address.');
    const seen = new Set<string>();
    for (const f of c.network.forwards ?? []) {
      const key = `${f.proto}:${f.hostAddress ?? '127.0.0.1'}:${f.hostPort}`;
      if (seen.has(key)) throw bad(`Host port ${f.proto} ${f.hostPort} is forwarded twice.`);
      seen.add(key);
    }
    if (c.network.bridge) {
      const why = (this.opts.bridgeRefusal ?? bridgeRefusal)(c.network.bridge);
      if (why) throw bad(why);
    }
    const devices = new Set([
      'net0',
      ...c.disks.map((d) => d.id),
      ...(c.boot.kind === 'iso' ? ['cd0'] : []),
      ...(c.cdroms ?? []).map((_, i) => `cd${i + 1}`),
    ]);
    if (!bootOrder) return;
    for (const dev of c.bootOrder ?? []) if (!devices.has(dev)) throw bad(`The boot order names ${dev}, which this VM does not have.`);
    if (new Set(c.bootOrder ?? []).size !== (c.bootOrder ?? []).length) throw bad('The boot order names a device twice.');
  }

  /** Each ISO in the extra CD-ROM drives must be readable as one (as boot ISOs are). */
  checkMedia(cdroms: (string | null)[] | undefined): void {
    for (const p of cdroms ?? []) if (p) this.checkBootFiles({ kind: 'iso', path: p });
  }

  /** Where the TPM of VM `id` keeps its state (beside the VM files, like the UEFI variables). */
  tpmStateDir(id: string): string {
    return join(this.store.dir, '..', 'tpm', id);
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
    // The one time the header is read for its format: from here on the config says.
    const format = diskFormatOf(input.path, input.format);
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
      format,
      ...(input.limits && Object.keys(input.limits).length > 0 ? { limits: input.limits } : {}),
    };
  }

  /** Throws unless we may open `path` as the disk server will and, for a host device, the host does not use it. */
  checkUsable(path: string, kind: 'file' | 'block', readOnly: boolean): void {
    // The format is decided by diskFormatOf when a disk is added, then stored: never probed here.
    checkDeviceAccess(path, { write: !readOnly, formatKnown: true });
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
    this.checkMedia(config.cdroms);
    this.checkMachine(config, false);
    for (const d of config.disks) {
      const conflict = modeConflict(d.aio, d.cache);
      if (conflict) throw new SpindleError('UNSUPPORTED_MODE', `Disk ${d.id}: ${conflict}`);
      const other = busy(d.path);
      if (other) throw new SpindleError('DEVICE_BUSY', other);
      this.checkUsable(d.path, diskKindOf(d.path), d.readOnly);
    }
  }

  /** OVMF code and this VM's own variable store (copied from the template on first boot). */
  firmwareFor(config: VmConfig): { code: string; vars: string; secure?: boolean } {
    if (config.secureBoot) {
      const sb = findSecureBootOvmf();
      if (!sb)
        throw new SpindleError(
          'INVALID_ARGUMENT',
          `VM '${config.name}' uses Secure Boot, but Debian's OVMF secure-boot firmware is not installed (package ovmf).`,
        );
      const vars = join(this.nvramDir(), `${config.id}_VARS_SB.fd`);
      if (!existsSync(vars)) copyFileSync(sb.varsTemplate, vars);
      return { code: sb.code, vars, secure: true };
    }
    const ovmf = findOvmf();
    if (!ovmf)
      throw new SpindleError(
        'INVALID_ARGUMENT',
        `VM '${config.name}' uses UEFI, but the OVMF firmware is not installed (Debian package ovmf).`,
      );
    const vars = join(this.nvramDir(), `${config.id}_VARS.fd`);
    if (!existsSync(vars)) copyFileSync(ovmf.varsTemplate, vars);
    return { code: ovmf.code, vars };
  }

  private nvramDir(): string {
    const dir = this.opts.nvramDir ?? join(this.store.dir, '..', 'nvram');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return dir;
  }
}

const KEY_WORDS: Record<string, string> = {
  cpus: 'the vCPU count',
  memoryMiB: 'the memory size',
  firmware: 'the firmware',
  boot: 'the boot source',
  network: 'the network',
  display: 'the display',
  machine: 'the machine type',
  secureBoot: 'Secure Boot',
  tpm: 'the TPM',
  cdroms: 'the CD-ROM drives',
};
const describeKey = (k: string): string => KEY_WORDS[k] ?? k;

function nextDiskId(existing: DiskConfig[]): string {
  const used = new Set(existing.map((d) => d.id));
  for (let i = 0; ; i++) if (!used.has(`d${i}`)) return `d${i}`;
}
