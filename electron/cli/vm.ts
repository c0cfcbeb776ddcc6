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
import { formatSize, parseSize } from '../shared/size.js';
import { type DiskSample, type VmInfo, type StatsTick } from '../shared/api.js';
import { vmNameKey } from '../shared/model.js';
import { apiSocketPath, connectLocalApi } from '../api/local-socket.js';
import type { Backend } from '../api/backend.js';
import { parseCommandArgs, wholeNumber } from './args.js';
import { MACHINE_OPTIONS, MACHINE_USAGE, machineFields } from './vm-flags.js';

export type Caller = {
  call(method: string, params: unknown): Promise<unknown>;
  close(): Promise<void> | void;
  local: boolean;
  backend?: Backend;
};

/**
 * The running host's API, else a backend in this process over the VM files. With `host` (vm start)
 * this process becomes the host when none runs; if another one won the race, it is asked instead.
 */
export async function caller(host: boolean): Promise<Caller> {
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

const USAGE = `spindle vm list|create|update|show|start|stop|kill|media|attach|detach|set-disk|resize|stats|delete|clone|autostart|snapshot [options]
  list                                   VMs and unreadable VM files
  create NAME [machine flags] [--disk PATH]...   a new VM: q35, BIOS, user networking, VNC unless the flags say otherwise
  update VM [machine flags]              changes a VM's settings; most need it stopped (it says which)
  show VM                                settings and state
  media VM DRIVE ISO|--eject             puts an ISO in CD-ROM drive DRIVE (cd0 boot ISO, cd1-cd3), or ejects it; live on a running VM
  start VM [--console] [--allow-base-writes]  asks the running app or spindle serve to start it; without one, runs it in the foreground until it stops
  stop VM [--timeout S]                  ACPI shutdown, forced off after the timeout (default 30 s)
  kill VM                                forces the VM off
  attach VM PATH [--format raw|qcow2] [--aio M] [--cache M] [--read-only] [--queues N] [--enospc stop|report]
                                         without --format the image's header decides, once: the format is stored
  detach VM DISK
  set-disk VM DISK [--aio M] [--cache M] [--nowait on|off|auto] [--read-only|--read-write] [--queues N] [--enospc stop|report]
                    [--limits iops-read=500,bps-write=50M,bps-write-max=200M,bps-write-max-length=10|none]
                                         I/O limits with QEMU's throttling names and rules; live on a running VM
  resize VM DISK SIZE                    grows the disk (10G, 512M…), live if the VM runs; never shrinks
  stats [VM]                             the latest per-disk and per-VM sample
  delete VM [--keep-disks]               removes the VM and the images Spindle made for it (your own files are kept)
  clone VM NEW [--linked]                a new VM: full copies of the disks, or qcow2 overlays on them
  autostart VM on|off                    start the VM when Spindle (app or serve) starts
  snapshot VM create|list|revert|delete [NAME]   internal qcow2 snapshots (revert: stopped VM)
${MACHINE_USAGE}
  every command takes --json`;

export function print(json: boolean, value: unknown, text: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : text());
}

export function describe(vm: VmInfo): string {
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
  const net = c.network.bridge
    ? `bridge ${c.network.bridge}`
    : c.network.user
      ? `user${(c.network.forwards ?? []).map((f) => ` ${f.proto}:${f.hostAddress ?? '127.0.0.1'}:${f.hostPort}->${f.guestPort}`).join(',')}`
      : 'none';
  const media = vm.media ?? [
    ...(c.boot.kind === 'iso' ? [{ drive: 'cd0', path: c.boot.path }] : []),
    ...(c.cdroms ?? []).map((path, i) => ({ drive: `cd${i + 1}`, path })),
  ];
  const lines = [
    `${c.name} (${c.id}): ${vm.runningElsewhere ? `running in another Spindle process (pid ${vm.runningElsewhere.pid})` : vm.state}${vm.pid ? ` pid ${vm.pid}` : ''}${vm.accelerator ? ` ${vm.accelerator}` : ''}`,
    `  ${c.cpus} vCPU, ${c.memoryMiB} MiB, ${c.machine ?? 'pc'}, ${c.firmware}${c.secureBoot ? ' (Secure Boot)' : ''}${c.tpm ? ', TPM 2.0' : ''}, boot: ${boot}${c.bootOrder?.length ? ` (order ${c.bootOrder.join(',')})` : ''}, network: ${net}, display: ${c.display}`,
    ...media.map((m) => `  ${m.drive}: ${m.path ?? '(empty)'}`),
    ...c.disks.map(
      (d) =>
        `  ${d.id}: ${d.path} (${d.kind}, ${d.format ?? 'raw'}) aio=${d.aio} cache=${d.cache} nowait=${d.nowait}${d.readOnly ? ' read-only' : ''} queues=${d.queues} enospc=${d.enospc ?? 'stop'}${hasLimits(d.limits) ? ` limits: ${describeLimits(d.limits)}` : ''} [${live(d.id)}]`,
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

export async function resolveId(api: Caller, ref: string | undefined): Promise<string> {
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

/** Subcommands in their own files (each parses its own options). */
type Sub = (sub: string, argv: string[]) => Promise<number>;
const MORE: Record<string, () => Promise<{ default: Sub }>> = {
  delete: () => import('./vm-manage.js'),
  clone: () => import('./vm-manage.js'),
  autostart: () => import('./vm-manage.js'),
  snapshot: () => import('./vm-snapshot.js'),
};

const command: Command = {
  summary: 'Define, start and control VMs whose disks Spindle serves',
  usage: USAGE,
  async run(argv) {
    const more = MORE[argv[0] ?? ''];
    if (more) return (await more()).default(argv[0]!, argv.slice(1));
    const { values: o, positionals } = parseCommandArgs(
      argv,
      {
        ...MACHINE_OPTIONS,
        json: { type: 'boolean' },
        disk: { type: 'string', multiple: true },
        eject: { type: 'boolean' },
        console: { type: 'boolean' },
        'allow-base-writes': { type: 'boolean' },
        timeout: { type: 'string' },
        aio: { type: 'string' },
        cache: { type: 'string' },
        nowait: { type: 'string' },
        'read-only': { type: 'boolean' },
        'read-write': { type: 'boolean' },
        queues: { type: 'string' },
        enospc: { type: 'string' },
        format: { type: 'string' },
        limits: { type: 'string' },
      },
      'vm',
    );
    const [sub, ...args] = positionals;
    const json = !!o.json;
    // The API's ranges (shared/api.ts), checked here too so the sentence names the option.
    const queues = wholeNumber(o.queues, '--queues', 1, 16);
    const timeout = wholeNumber(o.timeout, '--timeout', 0, 600, ' seconds');
    const abs = (p: string | undefined) => (p === undefined ? undefined : resolvePath(p));
    // Flag mistakes are reported before any VM file or host is touched.
    const createFields = sub === 'create' ? machineFields(o) : undefined;
    if (sub !== 'create' && sub !== 'update') {
      const stray = Object.keys(MACHINE_OPTIONS).find(
        (k) => (o as Record<string, unknown>)[k] !== undefined && !['no-net', 'no-display'].includes(k),
      );
      if (stray) throw new SpindleError('INVALID_ARGUMENT', `--${stray} is a setting for vm create or vm update, not vm ${sub ?? ''}.`);
    }
    if (o.format !== undefined && o.format !== 'raw' && o.format !== 'qcow2') {
      throw new SpindleError('INVALID_ARGUMENT', `--format takes raw or qcow2, not '${o.format}'.`);
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
          const name = args[0] ?? o.name;
          if (!name) throw new SpindleError('INVALID_ARGUMENT', 'Give the new VM a name: spindle vm create NAME …');
          const vm = (await api.call('vm.create', {
            ...createFields,
            name,
            disks: (o.disk ?? []).map((p) => ({ path: abs(p) })),
          })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'update': {
          const id = await resolveId(api, args[0]);
          const current = (await api.call('vm.get', { id })) as VmInfo;
          const patch = machineFields(o, current.config);
          if (!Object.keys(patch).length)
            throw new SpindleError('INVALID_ARGUMENT', `Say what to change, for example: spindle vm update ${args[0]} --memory 2048.`);
          const vm = (await api.call('vm.update', { id, patch })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'media': {
          const [ref, drive, iso] = args;
          if (!drive || (!iso && !o.eject) || (iso && o.eject))
            throw new SpindleError(
              'INVALID_ARGUMENT',
              'Give a drive and an ISO, or --eject: spindle vm media VM cd1 driver.iso | spindle vm media VM cd1 --eject',
            );
          const vm = (await api.call('vm.media', { id: await resolveId(api, ref), drive, path: iso ? abs(iso) : null })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'show': {
          const vm = (await api.call('vm.get', { id: await resolveId(api, args[0]) })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'start':
          return await start(api, await resolveId(api, args[0]), json, !!o.console, !!o['allow-base-writes']);
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
              ...(o.format ? { format: o.format } : {}),
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
        case 'resize': {
          if (!args[1] || !args[2])
            throw new SpindleError('INVALID_ARGUMENT', 'Name the disk and its new size: spindle vm resize VM DISK SIZE (e.g. d0 20G).');
          const sizeBytes = parseSize(args[2]);
          const vm = (await api.call('disk.resize', { vmId: await resolveId(api, args[0]), diskId: args[1], sizeBytes })) as VmInfo;
          print(json, vm, () => `${args[1]} is now ${formatSize(sizeBytes)}.\n${describe(vm)}`);
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
async function start(api: Caller, id: string, json: boolean, consoleOn: boolean, allowBaseWrites: boolean): Promise<number> {
  if (consoleOn && !api.local)
    throw new SpindleError(
      'INVALID_ARGUMENT',
      '--console needs the VM in the foreground, but the app or spindle serve hosts the VMs: use the console there.',
    );
  const vm = (await api.call('vm.start', { id, ...(allowBaseWrites ? { allowBaseWrites } : {}) })) as VmInfo;
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
