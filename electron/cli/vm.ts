// `spindle vm …`: the same API as the app. VMs live in the process that serves their disks, so:
// when a backend runs (the app, `spindle serve`, or a foreground `spindle vm start`), every
// command goes to it over its API socket; otherwise commands act on the VM files directly, and
// `vm start` runs the VM in the foreground (serving the API socket meanwhile, so `vm stop`,
// `vm kill`, `vm stats` from another terminal reach it) until the VM stops.
import { parseArgs } from 'node:util';
import { resolve as resolvePath } from 'node:path';
import type { Command } from '../cli.js';
import { SpindleError } from '../errors.js';
import { formatSize } from '../block/size.js';
import type { DiskSample, VmInfo, StatsTick } from '../api/contract.js';
import { apiSocketPath, connectLocalApi, serveLocalApi } from '../api/local-socket.js';

type Caller = { call(method: string, params: unknown): Promise<unknown>; close(): Promise<void> | void; local: boolean };

async function caller(): Promise<Caller & { backend?: import('../api/backend.js').Backend }> {
  const remote = await connectLocalApi(apiSocketPath());
  if (remote) return { ...remote, local: false };
  const { createBackend } = await import('../api/backend.js');
  const backend = createBackend();
  return { call: (m, p) => backend.router.call(m, p), close: () => backend.close(), local: true, backend };
}

const USAGE = `spindle vm list|create|show|start|stop|kill|attach|detach|set-disk|stats [options]
  list                                   VMs and unreadable VM files
  create NAME [--memory MiB] [--cpus N] [--kernel K --initrd I --append CMDLINE | --iso F] [--disk PATH]... [--uefi] [--no-net] [--no-display]
  show VM                                settings and state
  start VM [--console]                   starts; without a running backend, runs in the foreground until the VM stops
  stop VM [--timeout S]                  ACPI shutdown, forced off after the timeout (default 30 s)
  kill VM                                forces the VM off
  attach VM PATH [--aio M] [--cache M] [--read-only] [--queues N] [--enospc stop|report]
  detach VM DISK
  set-disk VM DISK [--aio M] [--cache M] [--nowait on|off|auto] [--read-only|--read-write] [--queues N] [--enospc stop|report]
  stats [VM]                             the latest per-disk and per-VM sample
  every command takes --json`;

function print(json: boolean, value: unknown, text: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : text());
}

function describe(vm: VmInfo): string {
  const c = vm.config;
  const boot = c.boot.kind === 'kernel' ? `kernel ${c.boot.kernel}${c.boot.initrd ? ` initrd ${c.boot.initrd}` : ''} "${c.boot.cmdline}"` : c.boot.kind === 'iso' ? `iso ${c.boot.path}` : 'disk';
  const lines = [
    `${c.name} (${c.id}): ${vm.state}${vm.pid ? ` pid ${vm.pid}` : ''}${vm.accelerator ? ` ${vm.accelerator}` : ''}`,
    `  ${c.cpus} vCPU, ${c.memoryMiB} MiB, ${c.firmware}, boot: ${boot}, network: ${c.network.user ? 'user' : 'none'}, display: ${c.display}`,
    ...c.disks.map((d) => `  ${d.id}: ${d.path} (${d.kind}) aio=${d.aio} cache=${d.cache} nowait=${d.nowait}${d.readOnly ? ' read-only' : ''} queues=${d.queues} enospc=${d.enospc ?? 'stop'} [${vm.disks.find((r) => r.id === d.id)?.state ?? 'stopped'}]`),
    ...vm.warnings.map((w) => `  warning: ${w}`),
  ];
  if (vm.pauseReason) lines.push(`  paused: ${vm.pauseReason}`);
  for (const w of vm.waitingForSpace ?? []) {
    const missing = w.missingBytes === null ? 'free space unknown (a host device)' : `needs ${formatSize(w.missingBytes)} more, ${formatSize(w.freeBytes ?? 0)} free`;
    lines.push(`  ${w.diskId} waits for space: ${w.parkedRequests} write(s), ${formatSize(w.parkedBytes)} (${missing})`);
  }
  if (vm.crash) lines.push(`  crashed: ${vm.crash.message}`, ...vm.crash.stderrTail.map((l) => `    | ${l}`));
  return lines.join('\n');
}

async function resolveId(api: Caller, ref: string | undefined): Promise<string> {
  if (!ref) throw new SpindleError('INVALID_ARGUMENT', 'Name the VM (its name or id).');
  const { vms } = (await api.call('vm.list', {})) as { vms: VmInfo[] };
  const hit = vms.find((v) => v.config.id === ref) ?? vms.filter((v) => v.config.name === ref).at(0);
  if (!hit) throw new SpindleError('NOT_FOUND', `There is no VM '${ref}'.`);
  return hit.config.id;
}

/** One line per disk sample; the nowait and submit-stall figures only when the sampler reported them. */
export function formatDiskSample(d: DiskSample): string {
  return `${d.vmId}/${d.diskId}: read ${d.readMBps.toFixed(1)} MB/s ${d.readIops.toFixed(0)} IOPS, write ${d.writeMBps.toFixed(1)} MB/s ${d.writeIops.toFixed(0)} IOPS, p50 ${d.latencyP50Us} µs p99 ${d.latencyP99Us} µs, QD ${d.queueDepth}, backend CPU ${d.backendCpuPct.toFixed(1)}%` +
    (d.nowaitFallbacksPerSec !== undefined ? `, nowait fallbacks ${d.nowaitFallbacksPerSec.toFixed(1)}/s` : '') +
    (d.submitStallMaxUs !== undefined ? `, longest submit ${Math.round(d.submitStallMaxUs)} µs` : '');
}

const command: Command = {
  summary: 'Define, start and control VMs whose disks Spindle serves',
  usage: USAGE,
  async run(argv) {
    const { values: o, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean' }, memory: { type: 'string' }, cpus: { type: 'string' }, kernel: { type: 'string' },
        initrd: { type: 'string' }, append: { type: 'string' }, iso: { type: 'string' }, disk: { type: 'string', multiple: true },
        uefi: { type: 'boolean' }, 'no-net': { type: 'boolean' }, 'no-display': { type: 'boolean' }, console: { type: 'boolean' },
        timeout: { type: 'string' }, aio: { type: 'string' }, cache: { type: 'string' }, nowait: { type: 'string' },
        'read-only': { type: 'boolean' }, 'read-write': { type: 'boolean' }, queues: { type: 'string' },
        enospc: { type: 'string' },
      },
    });
    const [sub, ...args] = positionals;
    const json = !!o.json;
    const num = (v: string | undefined, what: string) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n)) throw new SpindleError('INVALID_ARGUMENT', `--${what} takes a whole number, not '${v}'.`);
      return n;
    };
    const abs = (p: string | undefined) => (p === undefined ? undefined : resolvePath(p));
    const api = await caller();
    try {
      switch (sub) {
        case 'list': {
          const r = (await api.call('vm.list', {})) as { vms: VmInfo[]; problems: { file: string; reason: string }[] };
          print(json, r, () => [...r.vms.map((v) => `${v.config.id.padEnd(24)} ${v.state.padEnd(14)} ${v.config.name}`), ...r.problems.map((p) => `problem: ${p.reason}`)].join('\n') || 'No VMs yet: spindle vm create NAME …');
          return 0;
        }
        case 'create': {
          if (!args[0]) throw new SpindleError('INVALID_ARGUMENT', 'Give the new VM a name: spindle vm create NAME …');
          const boot = o.kernel ? { kind: 'kernel', kernel: abs(o.kernel), ...(o.initrd ? { initrd: abs(o.initrd) } : {}), cmdline: o.append ?? '' } : o.iso ? { kind: 'iso', path: abs(o.iso) } : { kind: 'disk' };
          const vm = (await api.call('vm.create', {
            name: args[0], ...(o.memory ? { memoryMiB: num(o.memory, 'memory') } : {}), ...(o.cpus ? { cpus: num(o.cpus, 'cpus') } : {}),
            firmware: o.uefi ? 'uefi' : 'bios', boot, disks: (o.disk ?? []).map((p) => ({ path: abs(p) })),
            network: { user: !o['no-net'] }, display: o['no-display'] ? 'none' : 'vnc',
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
          const vm = (await api.call('vm.shutdown', { id: await resolveId(api, args[0]), ...(o.timeout ? { timeoutMs: num(o.timeout, 'timeout')! * 1000 } : {}) })) as VmInfo;
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
          const vm = (await api.call('disk.attach', { vmId: await resolveId(api, args[0]), disk: {
            path: abs(args[1]), ...(o.aio ? { aio: o.aio } : {}), ...(o.cache ? { cache: o.cache } : {}), ...(o['read-only'] ? { readOnly: true } : {}), ...(o.queues ? { queues: num(o.queues, 'queues') } : {}),
            ...(o.enospc ? { enospc: o.enospc } : {}),
          } })) as VmInfo;
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
            ...(o.aio ? { aio: o.aio } : {}), ...(o.cache ? { cache: o.cache } : {}), ...(o.nowait ? { nowait: o.nowait } : {}),
            ...(o['read-only'] ? { readOnly: true } : o['read-write'] ? { readOnly: false } : {}), ...(o.queues ? { queues: num(o.queues, 'queues') } : {}),
            ...(o.enospc ? { enospc: o.enospc } : {}),
          };
          const vm = (await api.call('disk.set', { vmId: await resolveId(api, args[0]), diskId: args[1], patch })) as VmInfo;
          print(json, vm, () => describe(vm));
          return 0;
        }
        case 'stats': {
          const id = args[0] ? await resolveId(api, args[0]) : undefined;
          const { ticks } = (await api.call('stats.history', {})) as { ticks: StatsTick[] };
          const last = ticks.at(-1);
          const pick = last ? { ...last, disks: last.disks.filter((d) => !id || d.vmId === id), vms: last.vms.filter((v) => !id || v.vmId === id) } : null;
          print(json, pick, () => !pick ? (api.local ? 'No backend is running, so there are no live stats (start a VM or spindle serve).' : 'No samples yet.') : [
            ...pick.vms.map((v) => `${v.vmId}: QEMU CPU ${v.qemuCpuPct.toFixed(1)}%`),
            ...pick.disks.map(formatDiskSample),
          ].join('\n'));
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

/** With a backend: ask it and return. Without: run the VM here until it stops. */
async function start(api: Caller & { backend?: import('../api/backend.js').Backend }, id: string, json: boolean, consoleOn: boolean): Promise<number> {
  const vm = (await api.call('vm.start', { id })) as VmInfo;
  print(json, vm, () => describe(vm));
  if (!api.local || !api.backend) return 0;
  const { manager, router } = api.backend;
  const server = await serveLocalApi(router, apiSocketPath()).catch(() => null);
  if (!json) console.error(`No Spindle backend was running, so '${vm.config.name}' runs in this process: Ctrl-C shuts it down (twice: forces it off). Other terminals can use spindle vm stop/kill/stats.`);
  if (consoleOn) {
    manager.on('serial', (e: { vmId: string; data: Buffer }) => e.vmId === id && process.stdout.write(e.data));
    if (process.stdin.isTTY) process.stdin.setRawMode(false);
    process.stdin.on('data', (d: Buffer) => manager.serialInput(id, d));
  }
  let interrupts = 0;
  process.on('SIGINT', () => {
    interrupts++;
    void (interrupts === 1 ? manager.shutdown(id) : manager.forceOff(id)).catch(() => undefined);
  });
  // Stay while any VM of this process runs (other terminals may have started more through the socket).
  await new Promise<void>((resolve) => {
    const check = () => { if (![...manager.qemuProcesses()].length && manager.get(id).state !== 'starting') resolve(); };
    manager.on('vm', check);
    check();
  });
  server?.close();
  process.stdin.pause();
  const final = manager.get(id);
  if (!json) console.error(`'${final.config.name}' is ${final.state}.${final.crash ? ` ${final.crash.message}` : ''}`);
  return final.state === 'crashed' ? 1 : 0;
}

export default command;
