// `spindle vm …`: the same API as the app. VMs live in the process that serves their disks, the
// host (the app, `spindle serve`, or a foreground `spindle vm start`), so: when a host runs, every
// command goes to it over the local API socket; otherwise commands act on the VM files directly,
// and `vm start` makes this process the host (api/local-socket-host.ts) and runs the VM in the
// foreground, serving the socket meanwhile so `vm stop`, `vm set-disk`, `vm stats` from another
// terminal reach it, until its VMs stop.
import { describeLimits, hasLimits, parseLimits } from '../shared/limits.js';
import { resolve as resolvePath } from 'node:path';
import type { Command } from './main.js';
import { SpindleError } from '../shared/errors.js';
import { formatSize } from '../shared/size.js';
import { type DiskSample, type VmInfo, type StatsTick } from '../shared/api.js';
import { vmNameKey } from '../shared/model.js';
import { apiSocketPath, connectLocalApi } from '../api/local-socket.js';
import type { Backend } from '../api/backend.js';
import { parseCommandArgs, wholeNumber } from './args.js';

type Caller = { call(method: string, params: unknown): Promise<unknown>; close(): Promise<void> | void; local: boolean; backend?: Backend };

/**
 * The running host's API, else a backend in this process over the VM files. With `host` (vm start)
 * this process becomes the host when none runs; if another one won the race, it is asked instead.
 */
async function caller(host: boolean): Promise<Caller> {
  const remote = await connectLocalApi(apiSocketPath());
  if (remote) return { ...remote, local: false };
  if (!host) {
    const { createBackend } = await import('../api/backend.js');
    const backend = createBackend();
    return { call: (m, p) => backend.router.call(m, p), close: () => backend.close(), local: true, backend };
  }
  const { startHostedBackend } = await import('../api/local-socket-host.js');
  try {
    const hosted = await startHostedBackend('spindle vm start');
    return { call: (m, p) => hosted.backend.router.call(m, p), close: () => hosted.close(), local: true, backend: hosted.backend };
  } catch (err) {
    if (!(err instanceof SpindleError) || err.code !== 'CONFLICT') throw err;
    // Another process just became the host: give it a few seconds to open its socket.
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
      const late = await connectLocalApi(apiSocketPath());
      if (late) return { ...late, local: false };
    }
    throw err;
  }
}

const USAGE = `spindle vm list|create|show|start|stop|kill|attach|detach|set-disk|stats [options]
  list                                   VMs and unreadable VM files
  create NAME [--memory MiB] [--cpus N] [--kernel K [--initrd I] [--append CMDLINE] | --iso F] [--disk PATH]... [--uefi] [--no-net] [--no-display]
  show VM                                settings and state
  start VM [--console]                   asks the running app or spindle serve to start it; without one, runs it in the foreground until it stops
  stop VM [--timeout S]                  ACPI shutdown, forced off after the timeout (default 30 s)
  kill VM                                forces the VM off
  attach VM PATH [--aio M] [--cache M] [--read-only] [--queues N] [--enospc stop|report]
  detach VM DISK
  set-disk VM DISK [--aio M] [--cache M] [--nowait on|off|auto] [--read-only|--read-write] [--queues N] [--enospc stop|report]
                    [--limits iops-read=500,bps-write=50M,bps-write-max=200M,bps-write-max-length=10|none]
                                         I/O limits with QEMU's throttling names and rules; live on a running VM
  stats [VM]                             the latest per-disk and per-VM sample
  every command takes --json`;

function print(json: boolean, value: unknown, text: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : text());
}

function describe(vm: VmInfo): string {
  const c = vm.config;
  const live = (id: string) => {
    const r = vm.disks.find((d) => d.id === id);
    const m = r?.modes;
    return `${r?.state ?? 'stopped'}${m ? ` with aio=${m.aio} cache=${m.cache} nowait=${m.nowait}` : ''}`;
  };
  const boot =
    c.boot.kind === 'kernel'
      ? `kernel ${c.boot.kernel}${c.boot.initrd ? ` initrd ${c.boot.initrd}` : ''} "${c.boot.cmdline}"`
      : c.boot.kind === 'iso'
        ? `iso ${c.boot.path}`
        : 'disk';
  const lines = [
    `${c.name} (${c.id}): ${vm.runningElsewhere ? `running in another Spindle process (pid ${vm.runningElsewhere.pid})` : vm.state}${vm.pid ? ` pid ${vm.pid}` : ''}${vm.accelerator ? ` ${vm.accelerator}` : ''}`,
    `  ${c.cpus} vCPU, ${c.memoryMiB} MiB, ${c.firmware}, boot: ${boot}, network: ${c.network.user ? 'user' : 'none'}, display: ${c.display}`,
    ...c.disks.map(
      (d) =>
        `  ${d.id}: ${d.path} (${d.kind}) aio=${d.aio} cache=${d.cache} nowait=${d.nowait}${d.readOnly ? ' read-only' : ''} queues=${d.queues} enospc=${d.enospc ?? 'stop'}${hasLimits(d.limits) ? ` limits: ${describeLimits(d.limits)}` : ''} [${live(d.id)}]`,
    ),
    ...vm.warnings.map((w) => `  warning: ${w}`),
  ];
  if (vm.pauseReason) lines.push(`  paused: ${vm.pauseReason}`);
  for (const w of vm.waitingForSpace ?? []) {
    const missing =
      w.missingBytes === null
        ? 'free space unknown (a host device)'
        : `needs ${formatSize(w.missingBytes)} more, ${formatSize(w.freeBytes ?? 0)} free`;
    lines.push(`  ${w.diskId} waits for space: ${w.parkedRequests} write(s), ${formatSize(w.parkedBytes)} (${missing})`);
  }
  if (vm.crash) lines.push(`  crashed: ${vm.crash.message}`, ...vm.crash.stderrTail.map((l) => `    | ${l}`));
  return lines.join('\n');
}

async function resolveId(api: Caller, ref: string | undefined): Promise<string> {
  if (!ref) throw new SpindleError('INVALID_ARGUMENT', 'Name the VM (its name or id).');
  const { vms } = (await api.call('vm.list', {})) as { vms: VmInfo[] };
  const hit =
    vms.find((v) => v.config.id === ref) ??
    vms.find((v) => v.config.name === ref) ??
    vms.find((v) => vmNameKey(v.config.name) === vmNameKey(ref));
  if (!hit) throw new SpindleError('NOT_FOUND', `There is no VM '${ref}'.`);
  return hit.config.id;
}

/** One line per disk sample; the nowait and submit-stall figures only when the sampler reported them. */
export function formatDiskSample(d: DiskSample): string {
  return (
    `${d.vmId}/${d.diskId}: read ${d.readMBps.toFixed(1)} MB/s ${d.readIops.toFixed(0)} IOPS, write ${d.writeMBps.toFixed(1)} MB/s ${d.writeIops.toFixed(0)} IOPS, p50 ${d.latencyP50Us} µs p99 ${d.latencyP99Us} µs, QD ${d.queueDepth}, backend CPU ${d.backendCpuPct.toFixed(1)}%` +
    (d.nowaitFallbacksPerSec !== undefined ? `, nowait fallbacks ${d.nowaitFallbacksPerSec.toFixed(1)}/s` : '') +
    (d.submitStallMaxUs !== undefined ? `, longest submit ${Math.round(d.submitStallMaxUs)} µs` : '')
  );
}

const command: Command = {
  summary: 'Define, start and control VMs whose disks Spindle serves',
  usage: USAGE,
  async run(argv) {
    const { values: o, positionals } = parseCommandArgs(
      argv,
      {
        json: { type: 'boolean' },
        memory: { type: 'string' },
        cpus: { type: 'string' },
        kernel: { type: 'string' },
        initrd: { type: 'string' },
        append: { type: 'string' },
        iso: { type: 'string' },
        disk: { type: 'string', multiple: true },
        uefi: { type: 'boolean' },
        'no-net': { type: 'boolean' },
        'no-display': { type: 'boolean' },
        console: { type: 'boolean' },
        timeout: { type: 'string' },
        aio: { type: 'string' },
        cache: { type: 'string' },
        nowait: { type: 'string' },
        'read-only': { type: 'boolean' },
        'read-write': { type: 'boolean' },
        queues: { type: 'string' },
        enospc: { type: 'string' },
        limits: { type: 'string' },
      },
      'vm',
    );
    const [sub, ...args] = positionals;
    const json = !!o.json;
    // The API's ranges (shared/api.ts), checked here too so the sentence names the option.
    const memory = wholeNumber(o.memory, '--memory', 32, 1 << 20, ' MiB');
    const cpus = wholeNumber(o.cpus, '--cpus', 1, 64);
    const queues = wholeNumber(o.queues, '--queues', 1, 16);
    const timeout = wholeNumber(o.timeout, '--timeout', 0, 600, ' seconds');
    const abs = (p: string | undefined) => (p === undefined ? undefined : resolvePath(p));
    if (sub === 'create') {
      if (o.kernel && o.iso) throw new SpindleError('INVALID_ARGUMENT', '--kernel and --iso are two ways to boot; give one of them.');
      const orphan = !o.kernel && (o.initrd !== undefined ? '--initrd' : o.append !== undefined ? '--append' : null);
      if (orphan) throw new SpindleError('INVALID_ARGUMENT', `${orphan} goes with --kernel (direct kernel boot).`);
    }
    const api = await caller(sub === 'start');
    try {
      switch (sub) {
        case 'list': {
          const r = (await api.call('vm.list', {})) as { vms: VmInfo[]; problems: { file: string; reason: string }[] };
          const state = (v: VmInfo) =>
            v.runningElsewhere ? `running in another Spindle process (pid ${v.runningElsewhere.pid})` : v.state;
          print(
            json,
            r,
            () =>
              [
                ...r.vms.map((v) => `${v.config.id.padEnd(24)} ${state(v).padEnd(14)} ${v.config.name}`),
                ...r.problems.map((p) => `problem: ${p.reason}`),
              ].join('\n') || 'No VMs yet: spindle vm create NAME …',
          );
          return 0;
        }
        case 'create': {
          if (!args[0]) throw new SpindleError('INVALID_ARGUMENT', 'Give the new VM a name: spindle vm create NAME …');
          const boot = o.kernel
            ? { kind: 'kernel', kernel: abs(o.kernel), ...(o.initrd ? { initrd: abs(o.initrd) } : {}), cmdline: o.append ?? '' }
            : o.iso
              ? { kind: 'iso', path: abs(o.iso) }
              : { kind: 'disk' };
          const vm = (await api.call('vm.create', {
            name: args[0],
            ...(memory !== undefined ? { memoryMiB: memory } : {}),
            ...(cpus !== undefined ? { cpus } : {}),
            firmware: o.uefi ? 'uefi' : 'bios',
            boot,
            disks: (o.disk ?? []).map((p) => ({ path: abs(p) })),
            network: { user: !o['no-net'] },
            display: o['no-display'] ? 'none' : 'vnc',
          })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'show': {
          const vm = (await api.call('vm.get', { id: await resolveId(api, args[0]) })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'start':
          return await start(api, await resolveId(api, args[0]), json, !!o.console);
        case 'stop': {
          const vm = (await api.call('vm.shutdown', {
            id: await resolveId(api, args[0]),
            ...(timeout !== undefined ? { timeoutMs: timeout * 1000 } : {}),
          })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'kill': {
          const vm = (await api.call('vm.forceOff', { id: await resolveId(api, args[0]) })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'attach': {
          if (!args[1]) throw new SpindleError('INVALID_ARGUMENT', 'Name the disk image or device: spindle vm attach VM PATH');
          const vm = (await api.call('disk.attach', {
            vmId: await resolveId(api, args[0]),
            disk: {
              path: abs(args[1]),
              ...(o.aio ? { aio: o.aio } : {}),
              ...(o.cache ? { cache: o.cache } : {}),
              ...(o['read-only'] ? { readOnly: true } : {}),
              ...(queues !== undefined ? { queues } : {}),
              ...(o.enospc ? { enospc: o.enospc } : {}),
            },
          })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'detach': {
          const vm = (await api.call('disk.detach', { vmId: await resolveId(api, args[0]), diskId: args[1] })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'set-disk': {
          const patch = {
            ...(o.aio ? { aio: o.aio } : {}),
            ...(o.cache ? { cache: o.cache } : {}),
            ...(o.nowait ? { nowait: o.nowait } : {}),
            ...(o['read-only'] ? { readOnly: true } : o['read-write'] ? { readOnly: false } : {}),
            ...(queues !== undefined ? { queues } : {}),
            ...(o.enospc ? { enospc: o.enospc } : {}),
            ...(o.limits !== undefined ? { limits: parseLimits(o.limits) } : {}),
          };
          const vm = (await api.call('disk.set', { vmId: await resolveId(api, args[0]), diskId: args[1], patch })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'stats': {
          const id = args[0] ? await resolveId(api, args[0]) : undefined;
          const { ticks } = (await api.call('stats.history', {})) as { ticks: StatsTick[] };
          const last = ticks.at(-1);
          const pick = last
            ? { ...last, disks: last.disks.filter((d) => !id || d.vmId === id), vms: last.vms.filter((v) => !id || v.vmId === id) }
            : null;
          print(json, pick, () =>
            !pick
              ? api.local
                ? 'No backend is running, so there are no live stats (start a VM or spindle serve).'
                : 'No samples yet.'
              : [...pick.vms.map((v) => `${v.vmId}: QEMU CPU ${v.qemuCpuPct.toFixed(1)}%`), ...pick.disks.map(formatDiskSample)].join('\n'),
          );
          return 0;
        }
        default:
          throw new SpindleError('INVALID_ARGUMENT', `Unknown vm subcommand '${sub ?? ''}'.\nusage: ${USAGE}`);
      }
    } finally {
      await api.close();
    }
  },
};

/** With a host: ask it and return. Without: this process hosts (caller(true)) and runs the VM until it stops. */
async function start(api: Caller, id: string, json: boolean, consoleOn: boolean): Promise<number> {
  if (consoleOn && !api.local)
    throw new SpindleError(
      'INVALID_ARGUMENT',
      '--console needs the VM in the foreground, but the app or spindle serve hosts the VMs: use the console there.',
    );
  const vm = (await api.call('vm.start', { id })) as VmInfo;
  print(json, vm, () => describe(vm));
  if (!api.local || !api.backend) return 0;
  const { manager } = api.backend;
  if (!json)
    console.error(
      `No Spindle app or serve was running, so '${vm.config.name}' runs in this process: Ctrl-C shuts it down (twice: forces it off). Other terminals can use spindle vm stop/kill/set-disk/stats.`,
    );
  if (consoleOn) {
    manager.on('serial', (e: { vmId: string; data: Buffer }) => e.vmId === id && process.stdout.write(e.data));
    if (process.stdin.isTTY) process.stdin.setRawMode(false);
    process.stdin.on('data', (d: Buffer) => manager.serialInput(id, d));
  }
  // This process hosts every VM started through its socket too: a signal stops them all (QEMU
  // must not outlive the disk servers of this process). Once: ACPI shutdown; again: forced off.
  let interrupts = 0;
  const stopAll = () => {
    interrupts++;
    for (const { vmId } of [...manager.qemuProcesses()])
      void (interrupts === 1 ? manager.shutdown(vmId) : manager.forceOff(vmId)).catch(() => undefined);
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);
  // Stay while any VM of this process runs (other terminals may have started more through the socket).
  await new Promise<void>((resolve) => {
    const check = () => {
      if (![...manager.qemuProcesses()].length && manager.get(id).state !== 'starting') resolve();
    };
    manager.on('vm', check);
    check();
  });
  process.stdin.pause();
  const final = manager.get(id);
  if (!json) console.error(`'${final.config.name}' is ${final.state}.${final.crash ? ` ${final.crash.message}` : ''}`);
  return final.state === 'crashed' ? 1 : 0;
}

export default command;
