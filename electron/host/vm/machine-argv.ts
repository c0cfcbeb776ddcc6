// The parts of QEMU's argv that make the machine around the disks: PCIe root ports on q35, the
// CD-ROM drives, the boot order, the network card and the TPM. launcher.ts assembles them.
// QEMU's docs: docs/pcie.txt (root ports, hot-plug), docs/specs/tpm.rst (swtpm), qemu-options
// (hostfwd, -netdev bridge).
import type { VmConfig } from '../../shared/model.js';

/** Root ports kept free on q35 for disks plugged into a running VM. */
export const SPARE_ROOT_PORTS = 8;
export const MAX_CDROMS = 4;

/** The CD-ROM drives: cd0 holds the boot ISO when the VM boots from one; cd1… are the extra drives. */
export function cdromDrives(config: VmConfig): { drive: string; path: string | null }[] {
  const drives: { drive: string; path: string | null }[] = [];
  if (config.boot.kind === 'iso') drives.push({ drive: 'cd0', path: config.boot.path });
  (config.cdroms ?? []).forEach((path, i) => drives.push({ drive: `cd${i + 1}`, path }));
  return drives;
}

/** bootindex per device id: the VM's boot order, else the boot ISO or the first disk. */
export function bootIndexes(config: VmConfig): Map<string, number> {
  const order =
    config.bootOrder && config.bootOrder.length
      ? config.bootOrder
      : config.boot.kind === 'iso'
        ? ['cd0']
        : config.boot.kind === 'disk' && config.disks[0]
          ? [config.disks[0].id]
          : [];
  return new Map(order.map((dev, i) => [dev, i]));
}

/** The PCIe root port for device `dev` on q35 (each device gets its own, so it can be unplugged). */
export const rootPortOf = (dev: string): string => `rp-${dev}`;
/** The spare root ports' ids, for hot-plug. */
export const spareRootPorts = (): string[] => Array.from({ length: SPARE_ROOT_PORTS }, (_, i) => `rp-hp${i}`);

/** Root ports: one per boot-time PCI device, then the spares; eight functions per slot from 0x2 (VGA sits at 0x1). */
export function rootPortArgs(devices: string[]): string[] {
  const ports = [...devices.map(rootPortOf), ...spareRootPorts()];
  const a: string[] = [];
  ports.forEach((id, i) => {
    const slot = 2 + Math.floor(i / 8);
    const fn = i % 8;
    a.push(
      '-device',
      `pcie-root-port,id=${id},chassis=${i + 1},port=0x${(0x10 + i).toString(16)},bus=pcie.0,addr=0x${slot.toString(16)}.${fn}${fn === 0 ? ',multifunction=on' : ''}`,
    );
  });
  return a;
}

/** The network card's netdev: user networking with its forwards, or the host bridge. */
export function netdevArg(net: VmConfig['network']): string {
  if (net.bridge) return `bridge,id=net0,br=${net.bridge}`;
  const fwd = (net.forwards ?? []).map((f) => `,hostfwd=${f.proto}:${f.hostAddress ?? '127.0.0.1'}:${f.hostPort}-:${f.guestPort}`);
  return `user,id=net0${fwd.join('')}`;
}

/** The TPM: QEMU talks to swtpm over its control socket; CRB on q35 (what Windows 11 and virt-manager use), TIS on pc. */
export function tpmArgs(socket: string, machine: 'pc' | 'q35'): string[] {
  return [
    '-chardev',
    `socket,id=chrtpm,path=${socket.replace(/,/g, ',,')}`,
    '-tpmdev',
    'emulator,id=tpm0,chardev=chrtpm',
    '-device',
    `${machine === 'q35' ? 'tpm-crb' : 'tpm-tis'},tpmdev=tpm0`,
  ];
}
