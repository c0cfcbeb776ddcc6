// The VM settings panel's form state: a draft made from a VM's config, and the vm.update patch
// holding only what the draft changed (so a running VM is asked only about what really changes).
import type { BootSource, PortForward, VmConfig } from '../../../electron/shared/model.js';

export interface ForwardRow {
  proto: 'tcp' | 'udp';
  hostAddress: string;
  hostPort: number;
  guestPort: number;
}

export interface Draft {
  name: string;
  cpus: number;
  memoryMiB: number;
  machine: 'pc' | 'q35';
  firmware: 'bios' | 'uefi';
  secureBoot: boolean;
  tpm: boolean;
  bootKind: 'disk' | 'iso' | 'kernel';
  iso: string;
  kernel: string;
  initrd: string;
  cmdline: string;
  /** Extra CD-ROM drives (cd1…): an ISO path, or '' for an empty drive. */
  cdroms: string[];
  netMode: 'user' | 'bridge' | 'none';
  bridge: string;
  forwards: ForwardRow[];
  bootOrder: string[];
  display: 'vnc' | 'none';
}

export function draftOf(c: VmConfig): Draft {
  const b = c.boot;
  return {
    name: c.name,
    cpus: c.cpus,
    memoryMiB: c.memoryMiB,
    machine: c.machine ?? 'pc',
    firmware: c.firmware,
    secureBoot: !!c.secureBoot,
    tpm: !!c.tpm,
    bootKind: b.kind,
    iso: b.kind === 'iso' ? b.path : '',
    kernel: b.kind === 'kernel' ? b.kernel : '',
    initrd: b.kind === 'kernel' ? (b.initrd ?? '') : '',
    cmdline: b.kind === 'kernel' ? b.cmdline : '',
    cdroms: (c.cdroms ?? []).map((p) => p ?? ''),
    netMode: c.network.bridge ? 'bridge' : c.network.user ? 'user' : 'none',
    bridge: c.network.bridge ?? '',
    forwards: (c.network.forwards ?? []).map((f) => ({ ...f, hostAddress: f.hostAddress ?? '127.0.0.1' })),
    bootOrder: [...(c.bootOrder ?? [])],
    display: c.display,
  };
}

/** The devices this draft's VM could boot from, with a label each. */
export function bootDevices(d: Draft, disks: VmConfig['disks']): { id: string; label: string }[] {
  return [
    ...(d.bootKind === 'iso' ? [{ id: 'cd0', label: `CD-ROM cd0 (${d.iso || 'boot ISO'})` }] : []),
    ...d.cdroms.map((p, i) => ({ id: `cd${i + 1}`, label: `CD-ROM cd${i + 1} (${p || 'empty'})` })),
    ...disks.map((x) => ({ id: x.id, label: `Disk ${x.id} (${x.path})` })),
    ...(d.netMode !== 'none' ? [{ id: 'net0', label: 'Network (PXE)' }] : []),
  ];
}

/** The vm.update patch: every setting the draft holds that differs from `c`. */
export function patchOf(c: VmConfig, d: Draft): Record<string, unknown> {
  const boot: BootSource =
    d.bootKind === 'iso'
      ? { kind: 'iso', path: d.iso.trim() }
      : d.bootKind === 'kernel'
        ? { kind: 'kernel', kernel: d.kernel.trim(), ...(d.initrd.trim() ? { initrd: d.initrd.trim() } : {}), cmdline: d.cmdline }
        : { kind: 'disk' };
  const forwards: PortForward[] = d.forwards.map((f) => ({
    proto: f.proto,
    hostPort: Number(f.hostPort),
    guestPort: Number(f.guestPort),
    ...(f.hostAddress.trim() && f.hostAddress.trim() !== '127.0.0.1' ? { hostAddress: f.hostAddress.trim() } : {}),
  }));
  const network = {
    user: d.netMode === 'user',
    ...(d.netMode === 'user' && forwards.length ? { forwards } : {}),
    ...(d.netMode === 'bridge' ? { bridge: d.bridge.trim() } : {}),
    ...(c.network.mac ? { mac: c.network.mac } : {}),
  };
  const wanted: Record<string, unknown> = {
    name: d.name,
    cpus: Number(d.cpus),
    memoryMiB: Number(d.memoryMiB),
    machine: d.machine,
    firmware: d.firmware,
    secureBoot: d.secureBoot,
    tpm: d.tpm,
    boot,
    cdroms: d.cdroms.map((p) => p.trim() || null),
    network,
    bootOrder: d.bootOrder,
    display: d.display,
  };
  const current: Record<string, unknown> = {
    ...c,
    machine: c.machine ?? 'pc',
    secureBoot: !!c.secureBoot,
    tpm: !!c.tpm,
    cdroms: c.cdroms ?? [],
    bootOrder: c.bootOrder ?? [],
  };
  const same = (a: unknown, b: unknown) => JSON.stringify(normalise(a)) === JSON.stringify(normalise(b));
  return Object.fromEntries(Object.entries(wanted).filter(([k, v]) => !same(v, current[k])));
}

/** Objects with their keys sorted, so key order never makes two equal settings differ. */
function normalise(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalise);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, normalise((v as Record<string, unknown>)[k])]),
    );
  return v;
}
