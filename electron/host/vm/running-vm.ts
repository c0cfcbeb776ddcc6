// One running VM: its QEMU process, QMP connection and serial console, its state (moved only
// through the table in vm-state.ts) and its disk slots. QEMU is spawned after the disks listen;
// its exit is noticed, the disks are drained and closed, and the owner is told (onExited).
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { VmState } from '../../shared/api.js';
import type { DiskConfig, VmConfig } from '../../shared/model.js';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { QmpClient, type QmpEvent } from './qmp.js';
import { buildQemuArgv, resolveAccelerator, diskSocketName, QEMU_PACKAGE, type LaunchPaths } from './launcher.js';
import type { HeldLock } from './lock-file.js';
import type { DiskLease, DiskLeases } from '../disks/disk-leases.js';
import { checkedTransition } from './vm-state.js';
import { DiskSlots, type VmEvents } from './disk-slots.js';
import { Swtpm } from './tpm.js';
import { cdromDrives } from './machine-argv.js';
import { explainBridgeFailure } from './bridge.js';

const STDERR_LINES = 20;
const SERIAL_BACKLOG = 64 << 10;
const QMP_CONNECT_TIMEOUT_MS = 30_000;

export interface LaunchOptions {
  binary: string;
  env: NodeJS.ProcessEnv;
  kvmPath?: string;
  firmware?: { code: string; vars: string; secure?: boolean };
  /** Set: the VM has a TPM whose state lives in this directory. */
  tpmStateDir?: string;
}

export class RunningVm {
  private current: VmState = 'starting';
  proc: ChildProcess | null = null;
  qmp: QmpClient | null = null;
  serial: Socket | null = null;
  serialBacklog: Buffer[] = [];
  serialBytes = 0;
  stderrTail: string[] = [];
  private stderrPartial = '';
  readonly disks: DiskSlots;
  accelerator: 'kvm' | 'tcg' | undefined;
  warnings: string[] = [];
  /** Set while Spindle itself paused the VM because a disk's filesystem is full (enospc 'stop'). */
  pauseReason: string | null = null;
  /** Spindle (not the user) paused it for lack of space: it resumes it once the writes are written. */
  pausedForSpace = false;
  /** Pauses and resumes for lack of space, one at a time, in the order the disks asked. */
  private spaceSteps: Promise<void> = Promise.resolve();
  /** Set when Spindle asked QEMU to stop (shutdown, force off): its exit is not a crash. */
  stopRequested = false;
  guestShutdown = false;
  exited = false;
  spawned = false;
  /** Its disks' paths, leased while it runs (disks/disk-leases.ts), by disk id. */
  readonly leases = new Map<string, DiskLease>();
  /** This process's claim to run the VM (no other Spindle process may start it meanwhile). */
  lock: HeldLock | null = null;
  /** Its TPM's swtpm, while it runs. */
  tpm: Swtpm | null = null;
  /** What each CD-ROM drive holds now (null: empty), by drive id. */
  readonly media = new Map<string, string | null>();
  /** Resolves once QEMU has exited and the disks are closed. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  /** Called once QEMU has exited and the disks are closed, before `done` resolves. */
  onExited: (code: number | null, signal: NodeJS.Signals | null) => void = () => undefined;

  constructor(
    public config: VmConfig,
    readonly dir: string,
    private readonly events: VmEvents,
    diskSlots: (run: RunningVm) => DiskSlots,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
    this.disks = diskSlots(this);
  }

  get state(): VmState {
    return this.current;
  }

  /** Moves to `to` (vm-state.ts lists the allowed moves; any other is a bug and throws INTERNAL). */
  transition(to: VmState): void {
    this.current = checkedTransition(this.current, to, this.config.name);
  }

  get live(): boolean {
    return !!this.qmp?.isOpen && !this.exited;
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

  private addSerial(data: Buffer): void {
    this.serialBacklog.push(data);
    this.serialBytes += data.length;
    while (this.serialBytes > SERIAL_BACKLOG && this.serialBacklog.length > 1) this.serialBytes -= this.serialBacklog.shift()!.length;
  }

  /** Leases `disk`'s path to this VM while it runs (a path it holds already stays as it is). */
  leaseDisk(leases: DiskLeases, disk: DiskConfig): void {
    if (leases.holder(disk.path)) return;
    const holder = {
      kind: 'vm' as const,
      vmId: this.config.id,
      diskId: disk.id,
      vmName: () => this.config.name,
      vmState: () => this.state,
    };
    this.leases.set(disk.id, leases.claim(disk.path, holder));
  }

  /** Gives back one disk's lease, or all of them. */
  releaseLeases(diskId?: string): void {
    for (const [id, lease] of this.leases) {
      if (diskId !== undefined && id !== diskId) continue;
      lease.release();
      this.leases.delete(id);
    }
  }

  /** Runs `step` after the space steps already queued for this VM (never two QMP stop/cont at once). */
  spaceStep(step: () => Promise<void>): Promise<void> {
    const next = this.spaceSteps.then(step);
    this.spaceSteps = next.catch(() => undefined);
    return next;
  }

  /** Disks first (QEMU connects to each socket while it builds the devices), then QEMU, QMP, serial; then the guest runs. */
  async launch(opts: LaunchOptions): Promise<void> {
    const { config, dir } = this;
    const paths: LaunchPaths = { qmp: join(dir, 'qmp.sock'), serial: join(dir, 'serial.sock'), disks: {} };
    if (config.display === 'vnc') paths.vnc = join(dir, 'vnc.sock');
    for (const p of [paths.qmp, paths.serial, paths.vnc]) if (p) rmSync(p, { force: true });
    if (opts.firmware) paths.firmware = opts.firmware;
    for (const cd of cdromDrives(config)) this.media.set(cd.drive, cd.path);
    if (opts.tpmStateDir) {
      this.tpm = await Swtpm.start(opts.tpmStateDir, join(dir, 'tpm.sock'), opts.env);
      paths.tpm = this.tpm.socket;
    }

    for (const d of config.disks) {
      const socketPath = join(dir, diskSocketName(d.id));
      paths.disks[d.id] = socketPath;
      await this.disks.start(d, socketPath, { awaitPeer: true });
    }

    const accel = await resolveAccelerator(opts.binary, opts.env, opts.kvmPath);
    this.accelerator = accel.accel;
    if (accel.warning) this.warnings.push(accel.warning);
    const argv = buildQemuArgv(config, paths, accel.accel);
    const proc = spawn(opts.binary, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...opts.env, LC_ALL: 'C' } });
    this.proc = proc;
    const spawned = new Promise<void>((resolve, reject) => {
      proc.once('spawn', () => {
        this.spawned = true;
        resolve();
      });
      proc.once('error', (err) => {
        const e = errnoOf(err);
        reject(
          e === 'ENOENT' || e === 'EACCES'
            ? new SpindleError(
                'QEMU_MISSING',
                `QEMU could not be run from ${opts.binary} (${e}). Install the Debian package ${QEMU_PACKAGE}.`,
                e,
              )
            : new SpindleError('QEMU_FAILED', `QEMU could not be started: ${err.message}.`, e),
        );
      });
    });
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => this.addStderr(s));
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => this.addStderr(s));
    proc.once('exit', (code, signal) => void this.exit(code, signal));
    await spawned;
    // Only now is QEMU's pid known: until this the disks hold every connection unserved (QEMU's
    // own waits in the backlog), and from now on they serve that process alone.
    await this.disks.expectPeer(proc.pid!);

    this.qmp = await this.connectQmp(paths.qmp);
    this.qmp.on('event', (ev: QmpEvent) => this.onQmpEvent(ev));
    await this.connectSerial(paths.serial);
    const kvm = await this.qmp.execute<{ enabled: boolean }>('query-kvm');
    this.accelerator = kvm.enabled ? 'kvm' : 'tcg';
    await this.qmp.execute('cont');
    if (this.state === 'starting') this.transition('running');
    this.events.changed();
  }

  private async connectQmp(path: string): Promise<QmpClient> {
    const deadline = Date.now() + QMP_CONNECT_TIMEOUT_MS;
    for (;;) {
      if (this.exited) throw this.startFailure();
      if (existsSync(path)) {
        try {
          return await QmpClient.connect(path, { timeoutMs: Math.max(1000, deadline - Date.now()) });
        } catch (err) {
          if (this.exited) throw this.startFailure();
          if (Date.now() > deadline) throw err;
        }
      }
      if (Date.now() > deadline)
        throw new SpindleError('QEMU_FAILED', `QEMU did not open its control socket within ${QMP_CONNECT_TIMEOUT_MS / 1000} s.`);
      await sleep(50);
    }
  }

  private startFailure(): SpindleError {
    const tail = this.lastStderr();
    const bridge = this.config.network.bridge ? explainBridgeFailure(tail, this.config.network.bridge) : null;
    return new SpindleError(
      'QEMU_FAILED',
      `QEMU exited while starting VM '${this.config.name}'${tail.length ? `: ${tail.slice(-3).join(' / ')}` : '.'}${bridge ? ` ${bridge}` : ''}`,
    );
  }

  /** Ends what runs beside QEMU (swtpm); called once QEMU is gone or never started. */
  async stopAux(): Promise<void> {
    const tpm = this.tpm;
    this.tpm = null;
    await tpm?.stop();
  }

  private connectSerial(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = createConnection(path);
      sock.once('connect', () => {
        this.serial = sock;
        sock.off('error', reject);
        sock.on('error', () => {
          /* QEMU went away: exit() reports it */
        });
        resolve();
      });
      sock.once('error', (err) =>
        reject(new SpindleError('QEMU_FAILED', `Cannot connect to the serial console of '${this.config.name}': ${err.message}.`)),
      );
      sock.on('data', (data: Buffer) => {
        this.addSerial(data);
        this.events.serial(data);
      });
    });
  }

  private onQmpEvent(ev: QmpEvent): void {
    switch (ev.event) {
      case 'STOP':
        if (this.state === 'running') {
          this.transition('paused');
          this.events.changed();
        }
        break;
      case 'RESUME':
        if (this.state === 'paused' || this.state === 'starting') {
          this.transition('running');
          this.events.changed();
        }
        break;
      case 'SHUTDOWN':
        this.guestShutdown = true;
        if (this.state !== 'shutting-down') {
          this.transition('shutting-down');
          this.events.changed();
        }
        break;
      case 'RESET':
        this.events.log('info', `VM '${this.config.name}' was reset.`);
        break;
    }
  }

  private async exit(code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    this.exited = true;
    this.qmp?.close();
    this.serial?.destroy();
    await this.disks.closeAll();
    await this.stopAux();
    this.onExited(code, signal);
    for (const p of ['qmp.sock', 'serial.sock', 'vnc.sock']) rmSync(join(this.dir, p), { force: true });
    this.lock?.release();
    this.resolveDone();
    this.events.changed();
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
