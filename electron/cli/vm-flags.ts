// The machine flags `spindle vm create` and `spindle vm update` share: each flag given becomes a
// field of vm.create's params or of vm.update's patch (shared/api.ts); a flag not given leaves the
// setting as it is (update) or to its default (create).
import { resolve as resolvePath } from 'node:path';
import { SpindleError } from '../shared/errors.js';
import type { BootSource, PortForward, VmConfig } from '../shared/model.js';
import { wholeNumber } from './args.js';

export const MACHINE_OPTIONS = {
  name: { type: 'string' },
  memory: { type: 'string' },
  cpus: { type: 'string' },
  kernel: { type: 'string' },
  initrd: { type: 'string' },
  append: { type: 'string' },
  iso: { type: 'string' },
  'boot-disk': { type: 'boolean' },
  machine: { type: 'string' },
  uefi: { type: 'boolean' },
  bios: { type: 'boolean' },
  'secure-boot': { type: 'boolean' },
  'no-secure-boot': { type: 'boolean' },
  tpm: { type: 'boolean' },
  'no-tpm': { type: 'boolean' },
  net: { type: 'string' },
  'no-net': { type: 'boolean' },
  bridge: { type: 'string' },
  forward: { type: 'string', multiple: true },
  'no-forwards': { type: 'boolean' },
  cdrom: { type: 'string', multiple: true },
  'no-cdroms': { type: 'boolean' },
  'boot-order': { type: 'string' },
  display: { type: 'string' },
  'no-display': { type: 'boolean' },
} as const;

export const MACHINE_USAGE = `  machine flags (vm create and vm update):
    [--name N] [--memory MiB] [--cpus N]
    [--kernel K] [--initrd I] [--append CMDLINE] | [--iso F] | [--boot-disk]
    [--machine pc|q35] [--uefi|--bios] [--secure-boot|--no-secure-boot] [--tpm|--no-tpm]
    [--net on|off] [--bridge BR] [--forward [tcp|udp:][ADDR:]HOST:GUEST]... [--no-forwards]
    [--cdrom F|none]... [--no-cdroms] [--boot-order cd0,d0,net0] [--display vnc|none]`;

type Flags = {
  [K in keyof typeof MACHINE_OPTIONS]?: (typeof MACHINE_OPTIONS)[K]['type'] extends 'boolean'
    ? boolean
    : (typeof MACHINE_OPTIONS)[K] extends { multiple: true }
      ? string[]
      : string;
};

const bad = (msg: string) => new SpindleError('INVALID_ARGUMENT', msg);
const abs = (p: string) => resolvePath(p);

/** `tcp:2222:22`, `2222:22` (tcp), `udp:0.0.0.0:5353:53`: a forward, or an error naming the flag. */
export function parseForward(text: string): PortForward {
  const parts = text.split(':');
  const proto = parts[0] === 'tcp' || parts[0] === 'udp' ? (parts.shift() as 'tcp' | 'udp') : 'tcp';
  const usage = `--forward takes [tcp|udp:][ADDRESS:]HOSTPORT:GUESTPORT (for example tcp:2222:22), not '${text}'.`;
  if (parts.length !== 2 && parts.length !== 3) throw bad(usage);
  const [guest, host, addr] = [parts.pop()!, parts.pop()!, parts.pop()];
  const port = (s: string) => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < 1 || n > 65535) throw bad(`${usage} Ports are 1-65535.`);
    return n;
  };
  if (addr !== undefined && !/^(\d{1,3})(\.\d{1,3}){3}$/.test(addr)) throw bad(`${usage} The address is an IPv4 address.`);
  return { proto, hostPort: port(host), guestPort: port(guest), ...(addr !== undefined ? { hostAddress: addr } : {}) };
}

function pick<T>(yes: boolean | undefined, no: boolean | undefined, yesValue: T, noValue: T, names: string): T | undefined {
  if (yes && no) throw bad(`${names} contradict each other; give one.`);
  return yes ? yesValue : no ? noValue : undefined;
}

/**
 * The settings the flags give, as vm.update patch fields (vm.create takes the same names).
 * `current`: the VM being updated (for --initrd/--append alone, and the network's other parts).
 */
export function machineFields(o: Flags, current?: VmConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (o.name !== undefined) out.name = o.name;
  const memory = wholeNumber(o.memory, '--memory', 32, 1 << 20, ' MiB');
  const cpus = wholeNumber(o.cpus, '--cpus', 1, 64);
  if (memory !== undefined) out.memoryMiB = memory;
  if (cpus !== undefined) out.cpus = cpus;

  const bootKinds = [o.kernel !== undefined, o.iso !== undefined, !!o['boot-disk']].filter(Boolean).length;
  if (o.kernel !== undefined && o.iso !== undefined) throw bad('--kernel and --iso are two ways to boot; give one of them.');
  if (bootKinds > 1) throw bad('--kernel, --iso and --boot-disk are ways to boot; give one of them.');
  let boot: BootSource | undefined;
  if (o.kernel !== undefined) {
    const was = current?.boot.kind === 'kernel' ? current.boot : undefined;
    const initrd = o.initrd !== undefined ? o.initrd : was?.initrd;
    boot = { kind: 'kernel', kernel: abs(o.kernel), ...(initrd ? { initrd: abs(initrd) } : {}), cmdline: o.append ?? was?.cmdline ?? '' };
  } else if (o.iso !== undefined) {
    boot = { kind: 'iso', path: abs(o.iso) };
  } else if (o['boot-disk']) {
    boot = { kind: 'disk' };
  }
  if (o.kernel === undefined && (o.initrd !== undefined || o.append !== undefined)) {
    const flag = o.initrd !== undefined ? '--initrd' : '--append';
    if (boot || current?.boot.kind !== 'kernel') throw bad(`${flag} goes with --kernel (direct kernel boot).`);
    const initrd = o.initrd !== undefined ? o.initrd : current.boot.initrd;
    boot = { ...current.boot, ...(initrd ? { initrd: abs(initrd) } : {}), cmdline: o.append ?? current.boot.cmdline };
    if (o.initrd === '') delete (boot as { initrd?: string }).initrd;
  }
  if (boot) out.boot = boot;

  if (o.machine !== undefined) {
    if (o.machine !== 'pc' && o.machine !== 'q35') throw bad(`--machine is pc or q35, not '${o.machine}'.`);
    out.machine = o.machine;
  }
  const firmware = pick(o.uefi, o.bios, 'uefi', 'bios', '--uefi and --bios');
  if (firmware) out.firmware = firmware;
  const sb = pick(o['secure-boot'], o['no-secure-boot'], true, false, '--secure-boot and --no-secure-boot');
  if (sb !== undefined) out.secureBoot = sb;
  const tpm = pick(o.tpm, o['no-tpm'], true, false, '--tpm and --no-tpm');
  if (tpm !== undefined) out.tpm = tpm;

  // The network: start from the current one and apply what the flags change.
  if (o.net !== undefined && o.net !== 'on' && o.net !== 'off') throw bad(`--net is on or off, not '${o.net}'.`);
  if (o['no-net'] && o.net === 'on') throw bad('--net on and --no-net contradict each other; give one.');
  if (o.forward?.length && o['no-forwards']) throw bad('--forward and --no-forwards contradict each other; give one.');
  const netChanged = o.net !== undefined || o['no-net'] || o.bridge !== undefined || o.forward?.length || o['no-forwards'];
  if (netChanged) {
    const net: Record<string, unknown> = { ...(current?.network ?? { user: true }) };
    if (o.net === 'off' || o['no-net']) {
      net.user = false;
      delete net.bridge;
      delete net.forwards;
    }
    if (o.net === 'on') {
      net.user = true;
      delete net.bridge;
    }
    if (o.bridge !== undefined) {
      if (o.net === 'off' || o['no-net']) throw bad('--bridge gives the VM a network; it contradicts --net off.');
      net.bridge = o.bridge;
      net.user = false;
      delete net.forwards;
    }
    if (o['no-forwards']) delete net.forwards;
    if (o.forward?.length) {
      if (net.bridge) throw bad('--forward needs user networking (--net on), not a bridge.');
      net.user = true;
      net.forwards = o.forward.map(parseForward);
    }
    out.network = net;
  }

  if (o.cdrom?.length && o['no-cdroms']) throw bad('--cdrom and --no-cdroms contradict each other; give one.');
  if (o.cdrom?.length) out.cdroms = o.cdrom.map((p) => (p === 'none' ? null : abs(p)));
  if (o['no-cdroms']) out.cdroms = [];
  if (o['boot-order'] !== undefined) out.bootOrder = o['boot-order'] ? o['boot-order'].split(',').map((s) => s.trim()) : [];
  if (o.display !== undefined && o['no-display']) throw bad('--display and --no-display contradict each other; give one.');
  if (o.display !== undefined) {
    if (o.display !== 'vnc' && o.display !== 'none') throw bad(`--display is vnc or none, not '${o.display}'.`);
    out.display = o.display;
  }
  if (o['no-display']) out.display = 'none';
  return out;
}
