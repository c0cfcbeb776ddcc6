// The VM manager: VM configs from the store, and for each running VM its QEMU process, QMP
// connection, serial console and one disk server per disk. Disks start before QEMU and stop after
// it, so the guest never sees a disk vanish under it; a QEMU that dies is noticed, its disks are
// drained and closed, and the VM shows 'crashed' with QEMU's last words.
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import { existsSync, rmSync, copyFileSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type DiskInput, type DiskPatch, type VmInfo, type VmState, type DiskRuntime, type ConfigProblem, type SpaceWait } from '../../shared/api.js';
import { VM_CONFIG_VERSION, type DiskConfig, type VmConfig, vmNameKey } from '../../shared/model.js';
import type { ParsedParams } from '../../shared/api.js';
import { defaultModes, modeConflict, CACHE_SEMANTICS } from '../../shared/modes.js';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { VmStore } from './store.js';
import { QmpClient, type QmpEvent } from './qmp.js';
import { buildQemuArgv, resolveAccelerator, findOvmf, findQemu, chardevIdOf, diskSocketName, QEMU_PACKAGE, type LaunchPaths } from './launcher.js';
import type { DiskHost, DiskHostEvent, DiskHostFactory, DiskServeSpec } from './disk-host.js';
import { diskKindOf, checkDeviceAccess, deviceUsage } from '../../dataplane/block/host-devices.js';
import { vmRuntimeDir } from './paths.js';
import { describeSpaceWait, servedDiskFactory } from './served-disk.js';
import { tryLock, type HeldLock, type LockOwner } from './lock-file.js';
import { RunLocks } from './run-lock.js';

export interface VmManagerOptions {
  store: VmStore;
  /** Serves each disk (default: Spindle's own disk server, one IOThread per disk). */
  diskHostFactory?: DiskHostFactory;
  /** Explicit QEMU binary (tests pass a bad one); default SPINDLE_QEMU, then PATH. */
  qemuBinary?: string;
  env?: NodeJS.ProcessEnv;
  kvmPath?: string;
  /** How long an ACPI shutdown may take before the VM is forced off (default 30 s). */
  shutdownTimeoutMs?: number;
  /** Where UEFI variable stores live (default: next to the VM files). */
  nvramDir?: string;
  /** Why a host block device may not be used, or null (default: hostDeviceRefusal). */
  deviceRefusal?: (path: string) => string | null;
  /** Why another part of Spindle (an aio comparison) is using `path` right now, or null. */
  diskBusy?: (path: string) => string | null;
}

/** Why the host's use of a block device (mounted, held, swap, carries /, opened exclusively) forbids giving it to a VM, or null. */
export function hostDeviceRefusal(path: string): string | null {
  const usage = deviceUsage(path);
  return usage.inUse ? usage.reasons.join(' ') : null;
}

const STDERR_LINES = 20;
const SERIAL_BACKLOG = 64 << 10;
const QMP_CONNECT_TIMEOUT_MS = 30_000;
const DEVICE_DELETE_TIMEOUT_MS = 60_000;

interface DiskSlot {
  config: DiskConfig;
  host: DiskHost | null;
  state: DiskRuntime['state'];
  message?: string;
  /** What its parked writes wait for (enospc 'stop'), while they wait. */
  space?: Omit<SpaceWait, 'diskId' | 'path'>;
}

class RunningVm {
  state: VmState = 'starting';
  proc: ChildProcess | null = null;
  qmp: QmpClient | null = null;
  serial: Socket | null = null;
  serialBacklog: Buffer[] = [];
  serialBytes = 0;
  stderrTail: string[] = [];
  private stderrPartial = '';
  disks = new Map<string, DiskSlot>();
  accelerator: 'kvm' | 'tcg' | undefined;
  warnings: string[] = [];
  /** Set while Spindle itself paused the VM because a disk's filesystem is full (enospc 'stop'). */
  pauseReason: string | null = null;
  /** Spindle (not the user) paused it for lack of space: it resumes it once the writes are written. */
  pausedForSpace = false;
  /** Pauses and resumes for lack of space, one at a time, in the order the disks asked. */
  spaceSteps: Promise<void> = Promise.resolve();
  /** Set when Spindle asked QEMU to stop (shutdown, force off): its exit is not a crash. */
  stopRequested = false;
  guestShutdown = false;
  exited = false;
  spawned = false;
  /** This process's claim to run the VM (no other Spindle process may start it meanwhile). */
  lock: HeldLock | null = null;
  /** Resolves once QEMU has exited and the disks are closed. */
  readonly done: Promise<void>;
  resolveDone!: () => void;

  constructor(public config: VmConfig, readonly dir: string) {
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  addStderr(chunk: string): void {
    const parts = (this.stderrPartial + chunk).split('\n');
    this.stderrPartial = parts.pop() ?? '';
    for (const line of parts) if (line.trim()) this.stderrTail.push(line.trimEnd());
    if (this.stderrTail.length > STDERR_LINES) this.stderrTail.splice(0, this.stderrTail.length - STDERR_LINES);
  }

  lastStderr(): string[] {
    return this.stderrPartial.trim() ? [...this.stderrTail, this.stderrPartial.trimEnd()].slice(-STDERR_LINES) : [...this.stderrTail];
  }

  addSerial(data: Buffer): void {
    this.serialBacklog.push(data);
    this.serialBytes += data.length;
    while (this.serialBytes > SERIAL_BACKLOG && this.serialBacklog.length > 1) this.serialBytes -= this.serialBacklog.shift()!.length;
  }
}

type Crash = NonNullable<VmInfo['crash']>;

/**
 * Events: 'vm' ({type:'changed', vm} | {type:'deleted', id}), 'disk' (DiskEvent),
 * 'serial' ({vmId, data: Buffer}).
 */
export class VmManager extends EventEmitter {
  private readonly running = new Map<string, RunningVm>();
  private readonly crashes = new Map<string, Crash>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly store: VmStore;
  private readonly runLocks: RunLocks;
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly opts: VmManagerOptions) {
    super();
    this.store = opts.store;
    this.runLocks = new RunLocks(opts.store);
    this.env = opts.env ?? process.env;
  }

  // ───────────── queries ─────────────

  list(): { vms: VmInfo[]; problems: ConfigProblem[] } {
    const { vms, problems } = this.store.loadAll();
    return { vms: vms.map((c) => this.info(c)), problems };
  }

  get(id: string): VmInfo {
    return this.info(this.config(id));
  }

  /** Accepts a VM id or its exact name (for the CLI). */
  resolve(ref: string): string {
    const { vms } = this.store.loadAll();
    const byId = vms.find((v) => v.id === ref);
    if (byId) return byId.id;
    const exact = vms.filter((v) => v.name === ref);
    const byName = exact.length ? exact : vms.filter((v) => vmNameKey(v.name) === vmNameKey(ref));
    if (byName.length === 1) return byName[0]!.id;
    if (byName.length > 1) throw new SpindleError('CONFLICT', `Several VMs are named '${ref}'; use the id (${byName.map((v) => v.id).join(', ')}).`);
    throw new SpindleError('NOT_FOUND', `There is no VM '${ref}'.`);
  }

  private config(id: string): VmConfig {
    const run = this.running.get(id);
    if (run) return run.config;
    const found = this.store.loadAll().vms.find((v) => v.id === id);
    if (!found) throw new SpindleError('NOT_FOUND', `There is no VM with id '${id}'.`);
    return found;
  }

  private info(config: VmConfig): VmInfo {
    const run = this.running.get(config.id);
    const crash = run ? undefined : this.crashes.get(config.id);
    const elsewhere = this.runningElsewhere(config.id);
    const warnings = run ? [...run.warnings] : [];
    const waiting: SpaceWait[] = run
      ? [...run.disks.values()].flatMap((s) => (s.space ? [{ diskId: s.config.id, path: s.config.path, ...s.space }] : []))
      : [];
    for (const d of config.disks) if (d.cache === 'unsafe') warnings.push(`Disk ${d.id} (${d.path}) uses cache 'unsafe': guest flushes are ignored and data can be lost if the host crashes.`);
    return {
      config,
      state: run ? run.state : crash ? 'crashed' : 'stopped',
      ...(run?.proc?.pid ? { pid: run.proc.pid } : {}),
      ...(run?.accelerator ? { accelerator: run.accelerator } : {}),
      warnings,
      disks: config.disks.map((d) => {
        const slot = run?.disks.get(d.id);
        const size = slot?.host?.sizeBytes;
        const modes = slot?.host?.modes;
        return { id: d.id, state: slot?.state ?? 'stopped', ...(slot?.message ? { message: slot.message } : {}), ...(size !== undefined ? { sizeBytes: size } : {}), ...(modes ? { modes } : {}) };
      }),
      ...(crash ? { crash } : {}),
      ...(run?.pauseReason ? { pauseReason: run.pauseReason } : {}),
      ...(waiting.length ? { waitingForSpace: waiting } : {}),
      vnc: !!run && config.display === 'vnc' && run.state !== 'starting',
      ...(elsewhere ? { runningElsewhere: { pid: elsewhere.pid } } : {}),
    };
  }

  /** Which other process runs VM `id` (run-lock.ts), or null. */
  private runningElsewhere(id: string): LockOwner | null {
    return this.running.has(id) ? null : this.runLocks.owner(id);
  }

  /** Refuses a change to a VM that another Spindle process runs (its copy of the config would win). */
  private refuseIfElsewhere(config: VmConfig, what: string): void {
    const owner = this.runningElsewhere(config.id);
    if (owner) throw RunLocks.elsewhere(config, owner, what);
  }

  private notRunning(id: string, what: string): SpindleError {
    const config = this.config(id);
    const owner = this.runningElsewhere(id);
    return owner ? RunLocks.elsewhere(config, owner, what) : new SpindleError('CONFLICT', `VM '${config.name}' is not running, so it cannot ${what}.`);
  }

  private changed(id: string): void {
    try {
      this.emit('vm', { type: 'changed', vm: this.get(id) });
    } catch { /* deleted meanwhile */ }
  }

  /** Running VMs' disk servers, for the stats sampler. */
  *diskHosts(): Generator<{ vmId: string; diskId: string; host: DiskHost }> {
    for (const [vmId, run] of this.running) for (const [diskId, slot] of run.disks) if (slot.host) yield { vmId, diskId, host: slot.host };
  }

  /** Running QEMU processes, for the stats sampler. */
  *qemuProcesses(): Generator<{ vmId: string; pid: number }> {
    for (const [vmId, run] of this.running) if (run.proc?.pid && !run.exited) yield { vmId, pid: run.proc.pid };
  }

  vncSocketPath(vmId: string): string | null {
    const run = this.running.get(vmId);
    if (!run || run.config.display !== 'vnc' || run.state === 'starting') return null;
    return join(run.dir, 'vnc.sock');
  }

  serialBacklog(vmId: string): Buffer {
    this.config(vmId);
    const run = this.running.get(vmId);
    return run ? Buffer.concat(run.serialBacklog) : Buffer.alloc(0);
  }

  serialInput(vmId: string, data: Buffer): void {
    const run = this.running.get(vmId);
    if (!run?.serial || run.serial.destroyed) throw new SpindleError('CONFLICT', `VM '${this.config(vmId).name}' is not running, so its console takes no input.`);
    run.serial.write(data);
  }

  // ───────────── config changes ─────────────

  async create(input: ParsedParams<'vm.create'>): Promise<VmInfo> {
    this.store.refuseTakenName(input.name);
    if (input.firmware === 'uefi' && !findOvmf()) throw new SpindleError('INVALID_ARGUMENT', 'UEFI needs the OVMF firmware, which is not installed (Debian package ovmf).');
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
    this.changed(id);
    return this.get(id);
  }

  update(id: string, patch: ParsedParams<'vm.update'>['patch']): Promise<VmInfo> {
    return this.locked(id, async () => {
      const config = this.config(id);
      const run = this.running.get(id);
      const keys = Object.keys(patch).filter((k) => (patch as Record<string, unknown>)[k] !== undefined);
      if (!run) this.refuseIfElsewhere(config, 'be changed');
      if (patch.name !== undefined) this.store.refuseTakenName(patch.name, id);
      if (run && keys.some((k) => k !== 'name')) {
        throw new SpindleError('CONFLICT', `VM '${config.name}' is running; shut it down to change ${keys.filter((k) => k !== 'name').join(', ')}.`);
      }
      if (patch.firmware === 'uefi' && !findOvmf()) throw new SpindleError('INVALID_ARGUMENT', 'UEFI needs the OVMF firmware, which is not installed (Debian package ovmf).');
      if (patch.boot) this.checkBootFiles(patch.boot);
      const next: VmConfig = { ...config, ...Object.fromEntries(keys.map((k) => [k, (patch as Record<string, unknown>)[k]])) };
      this.store.update(next);
      if (run) run.config = next;
      this.changed(id);
      return this.get(id);
    });
  }

  delete(id: string): Promise<void> {
    return this.locked(id, async () => {
      const config = this.config(id);
      if (this.running.has(id)) throw new SpindleError('CONFLICT', `VM '${config.name}' is running; shut it down before deleting it.`);
      // Held while the files go, so no other process starts the VM meanwhile.
      const lockPath = this.store.runLockPath(id, { create: true });
      const lock = tryLock(lockPath);
      if (!lock) this.refuseIfElsewhere(config, 'be deleted');
      try {
        this.store.delete(id);
        rmSync(lockPath, { force: true });
      } finally {
        lock?.release();
      }
      this.crashes.delete(id);
      this.emit('vm', { type: 'deleted', id });
    });
  }

  /** Each boot file must be a file QEMU can read as one (an ISO may also be a CD drive's block device). */
  private checkBootFiles(boot: VmConfig['boot']): void {
    const files: [string, string][] = boot.kind === 'kernel'
      ? [['kernel', boot.kernel], ...(boot.initrd ? [['initrd', boot.initrd] as [string, string]] : [])]
      : boot.kind === 'iso' ? [['ISO image', boot.path]] : [];
    for (const [what, f] of files) {
      let st;
      try {
        st = statSync(f);
      } catch (err) {
        if (errnoOf(err) === 'ENOENT') throw new SpindleError('NOT_FOUND', `The boot file ${f} does not exist.`, 'ENOENT');
        throw new SpindleError('PERMISSION_DENIED', `The ${what} ${f} cannot be read: ${(err as Error).message}.`, errnoOf(err));
      }
      if (st.isDirectory()) throw new SpindleError('IS_DIRECTORY', `The ${what} ${f} is a directory; give the ${what} file itself.`, 'EISDIR');
      if (!st.isFile() && !(boot.kind === 'iso' && st.isBlockDevice())) {
        throw new SpindleError('INVALID_ARGUMENT', `The ${what} ${f} is not a regular file${boot.kind === 'iso' ? ' or a CD/DVD drive' : ''}.`);
      }
    }
  }

  /** A full disk config from user input: kind detected, defaults applied, conflicts refused. */
  private prepareDisk(input: DiskInput, existing: DiskConfig[], busyElsewhere: string | undefined): DiskConfig {
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
    };
  }

  /** Throws unless we may open `path` as the disk server will and, for a host device, the host does not use it. */
  private checkUsable(path: string, kind: 'file' | 'block', readOnly: boolean): void {
    checkDeviceAccess(path, { write: !readOnly });
    if (kind === 'block') {
      const why = (this.opts.deviceRefusal ?? hostDeviceRefusal)(path);
      if (why) throw new SpindleError('DEVICE_BUSY', why);
    }
  }

  /** Which running VM (other than `vmId`), or which other part of Spindle, uses `path`, as a refusal sentence. */
  private usedByOtherVm(path: string, vmId: string | undefined): string | undefined {
    for (const [id, run] of this.running) {
      if (id !== vmId && run.config.disks.some((d) => d.path === path)) return `${path} is in use by the running VM '${run.config.name}'.`;
    }
    return this.opts.diskBusy?.(path) ?? undefined;
  }

  // ───────────── lifecycle ─────────────

  start(id: string): Promise<VmInfo> {
    return this.locked(id, async () => {
      const config = this.config(id);
      if (this.running.has(id)) throw new SpindleError('CONFLICT', `VM '${config.name}' is already running.`);
      const binary = findQemu(this.opts.qemuBinary, this.env);
      this.checkBootFiles(config.boot);
      for (const d of config.disks) {
        const conflict = modeConflict(d.aio, d.cache);
        if (conflict) throw new SpindleError('UNSUPPORTED_MODE', `Disk ${d.id}: ${conflict}`);
        const other = this.usedByOtherVm(d.path, id);
        if (other) throw new SpindleError('DEVICE_BUSY', other);
        this.checkUsable(d.path, diskKindOf(d.path), d.readOnly);
      }
      const dir = vmRuntimeDir(id, this.env);
      const run = new RunningVm(config, dir);
      // Before anything touches the VM's sockets: another process running it keeps them.
      run.lock = this.runLocks.claim(config);
      this.running.set(id, run);
      this.crashes.delete(id);
      this.changed(id);
      try {
        await this.launch(run, binary);
      } catch (err) {
        if (!run.exited) {
          run.stopRequested = true;
          run.proc?.kill('SIGKILL');
        }
        if (run.spawned) await run.done;
        else await this.closeDisks(run);
        // A QEMU that died by itself while starting is recorded as a crash (onExit keeps its stderr).
        if (this.running.get(id) === run) this.running.delete(id);
        run.lock?.release();
        this.changed(id);
        throw err;
      }
      return this.get(id);
    });
  }

  private async launch(run: RunningVm, binary: string): Promise<void> {
    const { config, dir } = run;
    const paths: LaunchPaths = { qmp: join(dir, 'qmp.sock'), serial: join(dir, 'serial.sock'), disks: {} };
    if (config.display === 'vnc') paths.vnc = join(dir, 'vnc.sock');
    for (const p of [paths.qmp, paths.serial, paths.vnc]) if (p) rmSync(p, { force: true });
    if (config.firmware === 'uefi') paths.firmware = this.firmwareFor(config);

    // Disks first: QEMU connects to each disk socket while it builds the devices.
    for (const d of config.disks) {
      const socketPath = join(dir, diskSocketName(d.id));
      paths.disks[d.id] = socketPath;
      await this.startDisk(run, d, socketPath, { awaitPeer: true });
    }

    const accel = await resolveAccelerator(binary, this.env, this.opts.kvmPath);
    run.accelerator = accel.accel;
    if (accel.warning) run.warnings.push(accel.warning);
    const argv = buildQemuArgv(config, paths, accel.accel);
    const proc = spawn(binary, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...this.env, LC_ALL: 'C' } });
    run.proc = proc;
    const spawned = new Promise<void>((resolve, reject) => {
      proc.once('spawn', () => {
        run.spawned = true;
        resolve();
      });
      proc.once('error', (err) => {
        const e = errnoOf(err);
        reject(e === 'ENOENT' || e === 'EACCES'
          ? new SpindleError('QEMU_MISSING', `QEMU could not be run from ${binary} (${e}). Install the Debian package ${QEMU_PACKAGE}.`, e)
          : new SpindleError('QEMU_FAILED', `QEMU could not be started: ${err.message}.`, e));
      });
    });
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => run.addStderr(s));
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => run.addStderr(s));
    proc.once('exit', (code, signal) => void this.onExit(run, code, signal));
    await spawned;
    // Only now is QEMU's pid known: until this the disks hold every connection unserved (QEMU's
    // own waits in the backlog), and from now on they serve that process alone.
    await Promise.all([...run.disks.values()].map((slot) => slot.host?.expectPeer?.(proc.pid!)));

    run.qmp = await this.connectQmp(run, paths.qmp);
    run.qmp.on('event', (ev: QmpEvent) => this.onQmpEvent(run, ev));
    await this.connectSerial(run, paths.serial);
    const kvm = await run.qmp.execute<{ enabled: boolean }>('query-kvm');
    run.accelerator = kvm.enabled ? 'kvm' : 'tcg';
    await run.qmp.execute('cont');
    if (run.state === 'starting') run.state = 'running';
    this.changed(config.id);
  }

  /**
   * `peerPid`: the QEMU that may connect, when it is already running (hot-plug). At VM start the
   * disks must listen before QEMU exists (it connects while building its devices), so they start
   * with `awaitPeer` and serve nobody until launch() names QEMU's pid.
   */
  private async startDisk(run: RunningVm, d: DiskConfig, socketPath: string, peer: { peerPid?: number; awaitPeer?: boolean }): Promise<DiskSlot> {
    rmSync(socketPath, { force: true });
    const slot: DiskSlot = { config: d, host: null, state: 'stopped' };
    run.disks.set(d.id, slot);
    const spec: DiskServeSpec = {
      path: d.path, socketPath, aio: d.aio, cache: d.cache, nowait: d.nowait, readOnly: d.readOnly, queues: d.queues, serial: d.serial,
      enospc: d.enospc ?? 'stop',
      ...(peer.peerPid !== undefined ? { peerPid: peer.peerPid } : {}),
      ...(peer.awaitPeer ? { awaitPeer: true } : {}),
    };
    try {
      slot.host = await (this.opts.diskHostFactory ?? servedDiskFactory)(spec);
    } catch (err) {
      run.disks.delete(d.id);
      if (err instanceof SpindleError) throw new SpindleError(err.code, `Disk ${d.id} (${d.path}) could not be served: ${err.message}`, err.errno);
      throw new SpindleError('IO_ERROR', `Disk ${d.id} (${d.path}) could not be served: ${(err as Error).message}.`, errnoOf(err));
    }
    slot.state = 'serving';
    slot.host.on('event', (e) => this.onDiskEvent(run, slot, e));
    return slot;
  }

  private onDiskEvent(run: RunningVm, slot: DiskSlot, e: DiskHostEvent): void {
    if (e.broken) {
      slot.state = 'broken';
      slot.message = e.message;
    } else if (e.noSpace && (slot.state === 'serving' || slot.state === 'no-space')) {
      slot.state = 'no-space';
      slot.message = e.message;
    }
    if (e.space && slot.state === 'no-space') slot.space = { ...e.space, since: slot.space?.since ?? new Date().toISOString() };
    if (e.spaceRecovered) {
      if (slot.state === 'no-space') {
        slot.state = 'serving';
        delete slot.message;
      }
      delete slot.space;
    }
    if (!e.quiet) this.emit('disk', { vmId: run.config.id, diskId: slot.config.id, level: e.level, message: e.message, t: Date.now() });
    if (e.noSpace) void this.pauseForNoSpace(run);
    else if (e.spaceRecovered) void this.resumeAfterSpace(run);
    else if (e.broken || e.quiet) this.changed(run.config.id);
  }

  /** Runs `step` after the space steps already queued for this VM (never two QMP stop/cont at once). */
  private spaceStep(run: RunningVm, step: () => Promise<void>): Promise<void> {
    const next = run.spaceSteps.then(step);
    run.spaceSteps = next.catch(() => undefined);
    return next;
  }

  /**
   * enospc 'stop': a disk parked writes because its filesystem is full. The guest is paused (QMP
   * stop) so it piles up no more; the disk's IOThread retries the writes as space is freed, and
   * resumeAfterSpace() continues the guest once they are written. A VM the user paused stays theirs.
   */
  private pauseForNoSpace(run: RunningVm): Promise<void> {
    return this.spaceStep(run, async () => {
      if (run.qmp?.isOpen && !run.exited && (run.state === 'running' || run.state === 'starting')) {
        try {
          await run.qmp.execute('stop');
          if (run.state === 'running') run.state = 'paused';
          run.pausedForSpace = true;
        } catch (err) {
          this.emit('disk', { vmId: run.config.id, diskId: '', level: 'error', message: `VM '${run.config.name}' could not be paused after a disk ran out of space: ${(err as Error).message}`, t: Date.now() });
        }
      }
      if (run.pausedForSpace) run.pauseReason = this.spaceReason(run);
      this.changed(run.config.id);
    });
  }

  private spaceReason(run: RunningVm): string {
    const full = [...run.disks.values()].filter((s) => s.state === 'no-space').map((s) => s.config.path);
    const where = full.length ? full.join(' and ') : 'a disk';
    return `Spindle paused the VM because the filesystem holding ${where} is full. It resumes by itself once space is freed there and the waiting writes are written.`;
  }

  /** A disk's parked writes are all written: a VM Spindle paused for them goes on once no disk waits. */
  private resumeAfterSpace(run: RunningVm): Promise<void> {
    return this.spaceStep(run, async () => {
      if ([...run.disks.values()].some((s) => s.state === 'no-space')) {
        if (run.pausedForSpace) run.pauseReason = this.spaceReason(run);
        this.changed(run.config.id);
        return;
      }
      const ours = run.pausedForSpace;
      run.pausedForSpace = false;
      run.pauseReason = null;
      if (ours && run.state === 'paused' && run.qmp?.isOpen && !run.exited) {
        try {
          await run.qmp.execute('cont');
          if (run.state === 'paused') run.state = 'running';
          this.emit('disk', { vmId: run.config.id, diskId: '', level: 'info', message: `VM '${run.config.name}' resumed: space was freed and the writes that waited for it are written.`, t: Date.now() });
        } catch (err) {
          this.emit('disk', { vmId: run.config.id, diskId: '', level: 'error', message: `VM '${run.config.name}' could not be resumed after space was freed: ${(err as Error).message}`, t: Date.now() });
        }
      }
      this.changed(run.config.id);
    });
  }

  private async connectQmp(run: RunningVm, path: string): Promise<QmpClient> {
    const deadline = Date.now() + QMP_CONNECT_TIMEOUT_MS;
    for (;;) {
      if (run.exited) throw this.startFailure(run);
      if (existsSync(path)) {
        try {
          return await QmpClient.connect(path, { timeoutMs: Math.max(1000, deadline - Date.now()) });
        } catch (err) {
          if (run.exited) throw this.startFailure(run);
          if (Date.now() > deadline) throw err;
        }
      }
      if (Date.now() > deadline) throw new SpindleError('QEMU_FAILED', `QEMU did not open its control socket within ${QMP_CONNECT_TIMEOUT_MS / 1000} s.`);
      await sleep(50);
    }
  }

  private startFailure(run: RunningVm): SpindleError {
    const tail = run.lastStderr();
    return new SpindleError('QEMU_FAILED', `QEMU exited while starting VM '${run.config.name}'${tail.length ? `: ${tail.slice(-3).join(' / ')}` : '.'}`);
  }

  private connectSerial(run: RunningVm, path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = createConnection(path);
      sock.once('connect', () => {
        run.serial = sock;
        sock.off('error', reject);
        sock.on('error', () => { /* QEMU went away: onExit reports it */ });
        resolve();
      });
      sock.once('error', (err) => reject(new SpindleError('QEMU_FAILED', `Cannot connect to the serial console of '${run.config.name}': ${err.message}.`)));
      sock.on('data', (data: Buffer) => {
        run.addSerial(data);
        this.emit('serial', { vmId: run.config.id, data });
      });
    });
  }

  private onQmpEvent(run: RunningVm, ev: QmpEvent): void {
    const id = run.config.id;
    switch (ev.event) {
      case 'STOP':
        if (run.state === 'running') {
          run.state = 'paused';
          this.changed(id);
        }
        break;
      case 'RESUME':
        if (run.state === 'paused' || run.state === 'starting') {
          run.state = 'running';
          this.changed(id);
        }
        break;
      case 'SHUTDOWN':
        run.guestShutdown = true;
        if (run.state !== 'shutting-down') {
          run.state = 'shutting-down';
          this.changed(id);
        }
        break;
      case 'RESET':
        this.emit('disk', { vmId: id, diskId: '', level: 'info', message: `VM '${run.config.name}' was reset.`, t: Date.now() });
        break;
    }
  }

  private async onExit(run: RunningVm, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    run.exited = true;
    run.qmp?.close();
    run.serial?.destroy();
    await this.closeDisks(run);
    const id = run.config.id;
    const clean = run.stopRequested || (run.guestShutdown && code === 0);
    if (!clean) {
      const tail = run.lastStderr();
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      this.crashes.set(id, {
        at: new Date().toISOString(),
        exitCode: code,
        signal,
        stderrTail: tail,
        message: `QEMU ${how}${tail.length ? `: ${tail[tail.length - 1]}` : '.'}`,
      });
    }
    if (this.running.get(id) === run) this.running.delete(id);
    for (const p of ['qmp.sock', 'serial.sock', 'vnc.sock']) rmSync(join(run.dir, p), { force: true });
    run.lock?.release();
    run.resolveDone();
    this.changed(id);
  }

  /** Drains and closes every disk server of `run` (in parallel: each is its own thread). */
  private async closeDisks(run: RunningVm): Promise<void> {
    await Promise.all([...run.disks.values()].map(async (slot) => {
      const host = slot.host;
      slot.host = null;
      slot.state = 'stopped';
      if (!host) return;
      try {
        await host.stop();
      } catch (err) {
        this.emit('disk', { vmId: run.config.id, diskId: slot.config.id, level: 'error', message: `Disk ${slot.config.id} did not close cleanly: ${(err as Error).message}`, t: Date.now() });
      }
      rmSync(join(run.dir, diskSocketName(slot.config.id)), { force: true });
    }));
  }

  private runningOrThrow(id: string, what: string): RunningVm & { qmp: QmpClient } {
    const run = this.running.get(id);
    if (!run || !run.qmp || run.exited) throw this.notRunning(id, what);
    if (run.state === 'starting') throw new SpindleError('CONFLICT', `VM '${run.config.name}' is still starting; try again in a moment.`);
    return run as RunningVm & { qmp: QmpClient };
  }

  async pause(id: string): Promise<VmInfo> {
    const run = this.runningOrThrow(id, 'be paused');
    run.pausedForSpace = false;  // the user's pause now: free space does not end it
    run.pauseReason = null;
    await run.qmp.execute('stop');
    if (run.state === 'running') run.state = 'paused';
    this.changed(id);
    return this.get(id);
  }

  async resume(id: string): Promise<VmInfo> {
    const run = this.runningOrThrow(id, 'be resumed');
    await this.spaceStep(run, async () => {
      // Writes parked for lack of space are retried first; while some still find no space the VM
      // stays paused (running it would only park more), and resumes by itself once they fit.
      const parked = [...run.disks.values()].filter((s) => s.state === 'no-space');
      const outcomes = await Promise.all(parked.map((slot) => slot.host?.retryParked?.() ?? Promise.resolve({ retried: 0, parked: 0 })));
      const still = parked.filter((slot, i) => outcomes[i]!.parked > 0 && slot.state === 'no-space');
      for (const slot of parked) {
        if (still.includes(slot)) continue;
        if (slot.state === 'no-space') slot.state = 'serving';
        delete slot.message;
        delete slot.space;
      }
      if (still.length) {
        const why = still.map((s) => `the filesystem holding ${s.config.path} is still full (${s.space ? describeSpaceWait(s.space) : 'writes wait for space'})`).join('; ');
        this.changed(id);
        throw new SpindleError('CONFLICT', `VM '${run.config.name}' stays paused: ${why}. Free space there; the VM resumes by itself once the writes fit.`);
      }
      run.pausedForSpace = false;
      run.pauseReason = null;
      await run.qmp.execute('cont');
      if (run.state === 'paused') run.state = 'running';
      this.changed(id);
    });
    return this.get(id);
  }

  async reset(id: string): Promise<VmInfo> {
    const run = this.runningOrThrow(id, 'be reset');
    await run.qmp.execute('system_reset');
    return this.get(id);
  }

  /** ACPI power button; forced off when the guest has not powered off within the timeout. */
  async shutdown(id: string, timeoutMs = this.opts.shutdownTimeoutMs ?? 30_000): Promise<VmInfo> {
    const run = this.runningOrThrow(id, 'shut down');
    run.stopRequested = true;
    run.state = 'shutting-down';
    this.changed(id);
    try {
      await run.qmp.execute('cont'); // a paused guest cannot see the power button
      await run.qmp.execute('system_powerdown');
    } catch { /* QEMU is already going away */ }
    const timedOut = await Promise.race([run.done.then(() => false), sleep(timeoutMs).then(() => true)]);
    if (timedOut && !run.exited) {
      this.emit('disk', { vmId: id, diskId: '', level: 'warning', message: `VM '${run.config.name}' did not power off within ${Math.round(timeoutMs / 1000)} s; forcing it off.`, t: Date.now() });
      await this.forceOff(id);
    }
    await run.done;
    return this.get(id);
  }

  /** Pulls the plug: QEMU is told to quit (SIGKILL if it does not), then the disks are closed. */
  async forceOff(id: string): Promise<VmInfo> {
    const run = this.running.get(id);
    if (!run || run.exited) {
      if (this.runningElsewhere(id)) throw this.notRunning(id, 'be forced off');
      throw new SpindleError('CONFLICT', `VM '${this.config(id).name}' is not running.`);
    }
    run.stopRequested = true;
    const killTimer = setTimeout(() => run.proc?.kill('SIGKILL'), 5000);
    if (run.qmp?.isOpen) {
      run.qmp.execute('quit').catch(() => run.proc?.kill('SIGKILL'));
    } else {
      run.proc?.kill('SIGKILL');
    }
    await run.done;
    clearTimeout(killTimer);
    return this.get(id);
  }

  /** Stops every running VM (app exit): ACPI first, forced after the timeout. */
  async stopAll(timeoutMs = 10_000): Promise<void> {
    await Promise.all([...this.running.keys()].map((id) => this.shutdown(id, timeoutMs).catch(() => this.forceOff(id).catch(() => undefined))));
  }

  // ───────────── disks ─────────────

  attachDisk(vmId: string, input: DiskInput): Promise<VmInfo> {
    return this.locked(vmId, async () => {
      const config = this.config(vmId);
      const run = this.running.get(vmId);
      if (!run) this.refuseIfElsewhere(config, 'take a new disk');
      const disk = this.prepareDisk(input, run ? [...config.disks, ...[...run.disks.values()].map((s) => s.config)] : config.disks, this.usedByOtherVm(input.path, vmId));
      if (run) await this.hotplug(this.runningOrThrow(vmId, 'take a new disk'), disk);
      const next = { ...config, disks: [...config.disks, disk] };
      this.store.update(next);
      if (run) run.config = next;
      this.changed(vmId);
      return this.get(vmId);
    });
  }

  private async hotplug(run: RunningVm & { qmp: QmpClient }, disk: DiskConfig): Promise<void> {
    const socketPath = join(run.dir, diskSocketName(disk.id));
    const slot = await this.startDisk(run, disk, socketPath, { peerPid: run.proc!.pid! });
    let chardevAdded = false;
    try {
      await run.qmp.execute('chardev-add', {
        id: chardevIdOf(disk.id),
        backend: { type: 'socket', data: { addr: { type: 'unix', data: { path: socketPath } }, server: false, reconnect: 1 } },
      });
      chardevAdded = true;
      await run.qmp.execute('device_add', { driver: 'vhost-user-blk-pci', id: disk.id, chardev: chardevIdOf(disk.id), 'num-queues': disk.queues });
    } catch (err) {
      if (chardevAdded) await run.qmp.execute('chardev-remove', { id: chardevIdOf(disk.id) }).catch(() => undefined);
      run.disks.delete(disk.id);
      await slot.host?.stop().catch(() => undefined);
      throw err;
    }
  }

  detachDisk(vmId: string, diskId: string): Promise<VmInfo> {
    return this.locked(vmId, async () => {
      const config = this.config(vmId);
      const disk = config.disks.find((d) => d.id === diskId);
      if (!disk) throw new SpindleError('NOT_FOUND', `VM '${config.name}' has no disk ${diskId}.`);
      const run = this.running.get(vmId);
      if (!run) this.refuseIfElsewhere(config, 'release a disk');
      if (run) {
        const live = this.runningOrThrow(vmId, 'release a disk');
        if (live.state === 'paused') throw new SpindleError('CONFLICT', `VM '${config.name}' is paused; resume it so the guest can release disk ${diskId}.`);
        const deleted = live.qmp.waitEvent('DEVICE_DELETED', (d) => d.device === diskId, DEVICE_DELETE_TIMEOUT_MS);
        deleted.catch(() => undefined);
        await live.qmp.execute('device_del', { id: diskId });
        try {
          await deleted;
        } catch {
          throw new SpindleError('DEVICE_BUSY', `The guest in '${config.name}' did not release disk ${diskId} within ${DEVICE_DELETE_TIMEOUT_MS / 1000} s (it must support ACPI hot-unplug); the disk stays attached.`);
        }
        // Only now, with the device gone, may its server stop.
        await live.qmp.execute('chardev-remove', { id: chardevIdOf(diskId) }).catch(() => undefined);
        const slot = live.disks.get(diskId);
        live.disks.delete(diskId);
        await slot?.host?.stop();
        rmSync(join(live.dir, diskSocketName(diskId)), { force: true });
      }
      const next = { ...config, disks: config.disks.filter((d) => d.id !== diskId) };
      this.store.update(next);
      if (run) run.config = next;
      this.changed(vmId);
      return this.get(vmId);
    });
  }

  setDisk(vmId: string, diskId: string, patch: DiskPatch): Promise<VmInfo> {
    return this.locked(vmId, async () => {
      const config = this.config(vmId);
      const disk = config.disks.find((d) => d.id === diskId);
      if (!disk) throw new SpindleError('NOT_FOUND', `VM '${config.name}' has no disk ${diskId}.`);
      const next: DiskConfig = {
        ...disk,
        ...(patch.aio !== undefined ? { aio: patch.aio } : {}),
        ...(patch.cache !== undefined ? { cache: patch.cache } : {}),
        ...(patch.nowait !== undefined ? { nowait: patch.nowait } : {}),
        ...(patch.readOnly !== undefined ? { readOnly: patch.readOnly } : {}),
        ...(patch.queues !== undefined ? { queues: patch.queues } : {}),
        ...(patch.enospc !== undefined ? { enospc: patch.enospc } : {}),
      };
      const conflict = modeConflict(next.aio, next.cache);
      if (conflict) throw new SpindleError('UNSUPPORTED_MODE', conflict);
      const run = this.running.get(vmId);
      if (!run) this.refuseIfElsewhere(config, 'change its disks');
      if (run) {
        if (next.readOnly !== disk.readOnly || next.queues !== disk.queues || (next.enospc ?? 'stop') !== (disk.enospc ?? 'stop')) {
          throw new SpindleError('CONFLICT', `VM '${config.name}' is running: read-only, queue count and the full-disk policy of disk ${diskId} change only while it is stopped (aio and cache modes change live).`);
        }
        const host = run.disks.get(diskId)?.host;
        if (!host) throw new SpindleError('CONFLICT', `Disk ${diskId} of '${config.name}' is not being served right now.`);
        if (next.aio !== disk.aio || next.cache !== disk.cache || next.nowait !== disk.nowait) {
          await host.reconfigure({ aio: next.aio, cache: next.cache, nowait: next.nowait });
          this.emit('disk', { vmId, diskId, level: 'info', message: `Disk ${diskId} now uses aio '${next.aio}' and cache '${next.cache}' (${CACHE_SEMANTICS[next.cache].summary}).`, t: Date.now() });
        }
      }
      const nextConfig = { ...config, disks: config.disks.map((d) => (d.id === diskId ? next : d)) };
      this.store.update(nextConfig);
      if (run) {
        run.config = nextConfig;
        const slot = run.disks.get(diskId);
        if (slot) slot.config = next;
      }
      this.changed(vmId);
      return this.get(vmId);
    });
  }

  // ───────────── helpers ─────────────

  private firmwareFor(config: VmConfig): { code: string; vars: string } {
    const ovmf = findOvmf();
    if (!ovmf) throw new SpindleError('INVALID_ARGUMENT', `VM '${config.name}' uses UEFI, but the OVMF firmware is not installed (Debian package ovmf).`);
    const dir = this.opts.nvramDir ?? join(this.store.dir, '..', 'nvram');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const vars = join(dir, `${config.id}_VARS.fd`);
    if (!existsSync(vars)) copyFileSync(ovmf.varsTemplate, vars);
    return { code: ovmf.code, vars };
  }

  /** Serialises operations on one VM (start vs attach vs detach), never across VMs. */
  private locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.locks.set(id, settled);
    void settled.then(() => {
      if (this.locks.get(id) === settled) this.locks.delete(id);
    });
    return next;
  }
}

function nextDiskId(existing: DiskConfig[]): string {
  const used = new Set(existing.map((d) => d.id));
  for (let i = 0; ; i++) if (!used.has(`d${i}`)) return `d${i}`;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
