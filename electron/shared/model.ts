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

/** What a write meeting a full host filesystem does (QEMU's werror): 'stop' pauses the VM until space is freed, 'report' gives the guest an I/O error. */
export const EnospcPolicy = z.enum(ENOSPC_POLICIES);
export type EnospcPolicy = z.infer<typeof EnospcPolicy>;

export const DiskKind = z.enum(['file', 'block']);
export const Firmware = z.enum(['bios', 'uefi']);
export const Accelerator = z.enum(['kvm', 'tcg']);

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
  serial: DiskSerial,
  /** Absent (files written before it existed): 'stop'. */
  enospc: EnospcPolicy.optional(),
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
  network: z.strictObject({ user: z.boolean() }),
  display: z.enum(['vnc', 'none']),
  createdAt: z.string(),
});
export type VmConfig = z.infer<typeof VmConfig>;
