// The persisted domain model: a VM's settings and its disks, as stored one file per VM (see
// host/vm/store.ts), with the building blocks they are made of. Pure: no Node imports, so the
// renderer bundles it. The API (api.ts) carries these shapes; it adds no fields to them.
// Stability rule: extend, never rename (files written by older versions must still load).
import { z } from 'zod';
import { AIO_MODES, CACHE_MODES, ENOSPC_POLICIES, NOWAIT_MODES } from './modes.js';
import { IoLimits } from './limits.js';

// ───────────────────────────── building blocks ─────────────────────────────

/** An absolute path. The router canonicalises it (realpath) before any use. */
export const AbsolutePath = z
  .string()
  .min(1, 'A path is required.')
  .max(4096, 'That path is too long.')
  .refine((p) => p.startsWith('/'), 'Paths must be absolute (start with /).')
  .refine((p) => !p.includes('\0'), 'Paths cannot contain NUL characters.');

export const AioMode = z.enum(AIO_MODES);
export const CacheMode = z.enum(CACHE_MODES);
export const NowaitMode = z.enum(NOWAIT_MODES);

/** Free-text VM name: anything printable, 1–100 characters. */
export const VmName = z
  .string()
  .trim()
  .min(1, 'A VM needs a name.')
  .max(100, 'VM names are at most 100 characters.')
  // eslint-disable-next-line no-control-regex
  .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'VM names cannot contain control characters.');

/**
 * VM names are unique ignoring letter case (and Unicode compatibility forms): two names with the
 * same key are the same name. The backend refuses a taken name (error code NAME_TAKEN) at
 * creation and rename; a client can warn as the user types with the same comparison.
 */
export function vmNameKey(name: string): string {
  return name.trim().normalize('NFKC').toLowerCase();
}

/** The VM (other than `exceptId`) whose name is the same as `name`, if any. */
export function vmNamed<T extends { id: string; name: string }>(vms: readonly T[], name: string, exceptId?: string): T | undefined {
  const key = vmNameKey(name);
  return vms.find((v) => v.id !== exceptId && vmNameKey(v.name) === key);
}

/** Stable VM id: derived from the name at creation (lowercase slug), unique, never changes. */
export const VmId = z
  .string()
  .min(1)
  .max(80)
  .regex(/^[a-z0-9][a-z0-9-]*$/, 'That is not a VM id.');
/** Stable disk id within a VM ('d0', 'd1', …): names QEMU's chardev/device and the disk socket. */
export const DiskId = z.string().regex(/^d[0-9]{1,3}$/, 'That is not a disk id (d0, d1, …).');

/** virtio-blk GET_ID: up to 20 printable ASCII bytes. */
export const DiskSerial = z
  .string()
  .max(20, 'A disk serial is at most 20 characters.')
  .regex(/^[\x20-\x7e]*$/, 'A disk serial must be printable ASCII.');

/** A unicast, locally administered MAC address such as 52:54:00:12:34:56. */
export const MacAddress = z
  .string()
  .regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, 'A MAC address is six lowercase hex pairs separated by colons.');

/** What a write meeting a full host filesystem does (QEMU's werror): 'stop' pauses the VM until space is freed, 'report' gives the guest an I/O error. */
export const EnospcPolicy = z.enum(ENOSPC_POLICIES);
export type EnospcPolicy = z.infer<typeof EnospcPolicy>;

export const DiskKind = z.enum(['file', 'block']);
/** A disk's image format: read from its header once, when it is added, and never probed again
 *  (a guest may write any bytes to a raw disk, a qcow2 header too: QEMU's CVE-2008-2004). */
export const DISK_FORMATS = ['raw', 'qcow2'] as const;
export const DiskFormat = z.enum(DISK_FORMATS);
export type DiskFormat = z.infer<typeof DiskFormat>;
export const Firmware = z.enum(['bios', 'uefi']);
export const Accelerator = z.enum(['kvm', 'tcg']);
/** QEMU machine type: 'q35' (PCIe, hot-plug through root ports) for new VMs; 'pc' (i440fx) for VMs made before it existed. */
export const MachineType = z.enum(['pc', 'q35']);
export type MachineType = z.infer<typeof MachineType>;

/** A host port forwarded to a guest port (QEMU user networking's hostfwd). */
export const PortForward = z.strictObject({
  proto: z.enum(['tcp', 'udp']),
  hostPort: z.int().min(1).max(65535),
  guestPort: z.int().min(1).max(65535),
  /** The host address it listens on; absent: 127.0.0.1 (only this host can connect). */
  hostAddress: z.ipv4().optional(),
});
export type PortForward = z.infer<typeof PortForward>;

/** A Linux bridge name (IFNAMSIZ: at most 15 bytes, no '/', no spaces). */
export const BridgeName = z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, 'A bridge name is 1-15 letters, digits, dots, dashes or underscores.');

/** The VM's one network card: user networking (NAT, with port forwards), or a host bridge, or none. */
export const NetworkConfig = z.strictObject({
  user: z.boolean(),
  /** User networking only: host ports forwarded into the guest. */
  forwards: z.array(PortForward).max(32).optional(),
  /** Set: the card joins this existing host bridge (through qemu-bridge-helper) instead of user networking. */
  bridge: BridgeName.optional(),
  /** The card's MAC address; absent (older files): QEMU's default. */
  mac: MacAddress.optional(),
});
export type NetworkConfig = z.infer<typeof NetworkConfig>;

/** What a VM can boot from, for the boot order: a CD-ROM drive (cd0 the boot ISO, cd1… the others), a disk, the network card. */
export const BootDevice = z.string().regex(/^(cd[0-3]|d[0-9]{1,3}|net0)$/, 'A boot device is cd0-cd3, a disk id (d0, d1, …) or net0.');

/** Extra CD-ROM drives (cd1, cd2, cd3), each an ISO or empty (null). */
export const Cdroms = z.array(AbsolutePath.nullable()).max(3, 'A VM has at most three CD-ROM drives besides its boot ISO.');

// ───────────────────────────── VM model (persisted) ─────────────────────────────

export const DiskConfig = z.strictObject({
  id: DiskId,
  path: AbsolutePath,
  kind: DiskKind,
  aio: AioMode,
  cache: CacheMode,
  nowait: NowaitMode,
  readOnly: z.boolean(),
  queues: z.int().min(1).max(16),
  /** A linked clone's disk: the image its qcow2 overlay reads from (another VM's disk, kept as its read-only base). */
  backing: AbsolutePath.optional(),
  serial: DiskSerial,
  /** Absent (files written before it existed): 'stop'. */
  enospc: EnospcPolicy.optional(),
  /** Absent (files written before it existed): 'raw'. */
  format: DiskFormat.optional(),
  /** I/O limits (QEMU's throttle semantics, shared/limits.ts); absent or {}: none. */
  limits: IoLimits.optional(),
});
export type DiskConfig = z.infer<typeof DiskConfig>;

export const BootSource = z.discriminatedUnion('kind', [
  /** Boot from the first disk (or whatever the firmware finds). */
  z.strictObject({ kind: z.literal('disk') }),
  /** An ISO attached as a QEMU CD-ROM (ide-cd: the installer, not a Spindle-served disk). */
  z.strictObject({ kind: z.literal('iso'), path: AbsolutePath }),
  /** Direct kernel boot. */
  z.strictObject({
    kind: z.literal('kernel'),
    kernel: AbsolutePath,
    initrd: AbsolutePath.optional(),
    cmdline: z.string().max(4096).default(''),
  }),
]);
export type BootSource = z.infer<typeof BootSource>;

export const VM_CONFIG_VERSION = 1;

/** One file per VM under $XDG_CONFIG_HOME/spindle/vms/<id>.json. */
export const VmConfig = z.strictObject({
  version: z.literal(VM_CONFIG_VERSION),
  id: VmId,
  name: VmName,
  cpus: z.int().min(1).max(64),
  memoryMiB: z
    .int()
    .min(32)
    .max(1 << 20),
  firmware: Firmware,
  boot: BootSource,
  disks: z.array(DiskConfig).max(32),
  network: NetworkConfig,
  display: z.enum(['vnc', 'none']),
  createdAt: z.string(),
  /** Absent (files written before it existed): 'pc'. */
  machine: MachineType.optional(),
  /** UEFI Secure Boot (OVMF's secure-boot build, SMM on; q35 only). */
  secureBoot: z.boolean().optional(),
  /** A TPM 2.0 (swtpm, started and stopped with the VM; its state is kept with the VM's files). */
  tpm: z.boolean().optional(),
  cdroms: Cdroms.optional(),
  /** Devices to boot from, first first; absent: the boot ISO, else the first disk. */
  bootOrder: z.array(BootDevice).max(40).optional(),
  /** Start this VM when Spindle starts (the app or `spindle serve`); absent: no. */
  autostart: z.boolean().optional(),
});
export type VmConfig = z.infer<typeof VmConfig>;
