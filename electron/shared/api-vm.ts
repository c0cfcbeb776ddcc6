// The API's VM shapes: a VM's runtime state as clients see it (VmInfo, its disks, crash, space
// waits), the inputs that create and change VMs and disks, and internal qcow2 snapshots.
// Pure (no Node imports); re-exported by api.ts, the one import point.
import { z } from 'zod';
import {
  AbsolutePath,
  Accelerator,
  AioMode,
  BootDevice,
  BootSource,
  CacheMode,
  Cdroms,
  DiskFormat,
  DiskId,
  DiskSerial,
  EnospcPolicy,
  Firmware,
  MachineType,
  NetworkConfig,
  NowaitMode,
  VmConfig,
  VmName,
} from './model.js';
import { IoLimits } from './limits.js';

// ───────────────────────────── VM runtime ─────────────────────────────

export const VmState = z.enum(['stopped', 'starting', 'running', 'paused', 'shutting-down', 'crashed']);
export type VmState = z.infer<typeof VmState>;

export const DiskRuntime = z.object({
  id: DiskId,
  /** 'serving': its disk server runs; 'broken': the guest sent a malformed request (virtio NEEDS_RESET). */
  /** 'no-space': writes wait because the filesystem holding the disk is full (enospc 'stop'); the VM is paused. */
  state: z.enum(['stopped', 'serving', 'broken', 'error', 'no-space']),
  message: z.string().optional(),
  /** Size the disk server sees (bytes), when serving. */
  sizeBytes: z.number().optional(),
  /** The modes the disk server serves with right now (after a live switch: the new ones), when serving. */
  modes: z.object({ aio: AioMode, cache: CacheMode, nowait: NowaitMode }).optional(),
  /** Live mode switches of this disk while the VM runs (the last 10 minutes, at most 20), oldest first:
   *  the UI marks them on the disk's charts, across a page reload. */
  switches: z
    .array(
      z.object({
        /** Epoch seconds, like the stats ticks. */
        t: z.number(),
        from: z.object({ aio: AioMode, cache: CacheMode, nowait: NowaitMode }),
        to: z.object({ aio: AioMode, cache: CacheMode, nowait: NowaitMode }),
      }),
    )
    .optional(),
});
export type DiskRuntime = z.infer<typeof DiskRuntime>;

/** Writes of one disk parked because the filesystem holding its image is full (enospc 'stop'). */
export const SpaceWait = z.object({
  diskId: DiskId,
  path: z.string(),
  /** Writes waiting (or being retried). */
  parkedRequests: z.number(),
  /** The bytes they write. */
  parkedBytes: z.number(),
  /** Free space an unprivileged user may use on that filesystem; null for a host block device. */
  freeBytes: z.number().nullable(),
  /** How much more free space they need at least; null when unknown (a host block device). */
  missingBytes: z.number().nullable(),
  /** When the first of them was parked (ISO time). */
  since: z.string(),
});
export type SpaceWait = z.infer<typeof SpaceWait>;

export const VmCrash = z.object({
  at: z.string(),
  exitCode: z.number().nullable(),
  signal: z.string().nullable(),
  /** QEMU's last stderr lines, oldest first. */
  stderrTail: z.array(z.string()),
  message: z.string(),
});

export const VmInfo = z.object({
  config: VmConfig,
  state: VmState,
  /** Set while QEMU runs. */
  pid: z.number().optional(),
  accelerator: Accelerator.optional(),
  /** Visible warnings (TCG fallback, unsafe cache…), sentences. */
  warnings: z.array(z.string()),
  disks: z.array(DiskRuntime),
  crash: VmCrash.optional(),
  /** Why Spindle paused the VM by itself (a disk's filesystem is full), a sentence; cleared on resume. */
  pauseReason: z.string().optional(),
  /** Disks whose writes wait for free space; Spindle retries them as space is freed and resumes a
   *  VM it paused for this once they are written. Absent when none waits. */
  waitingForSpace: z.array(SpaceWait).optional(),
  /** True when QEMU has a VNC display the transports can bridge (see consoles below). */
  vnc: z.boolean(),
  /** Set when another Spindle process runs this VM (state here is 'stopped'): changes and start are refused. */
  runningElsewhere: z.object({ pid: z.number() }).optional(),
  /** While it runs: what each CD-ROM drive holds now (null: empty), cd0 first. */
  media: z.array(z.object({ drive: z.string(), path: z.string().nullable() })).optional(),
});
export type VmInfo = z.infer<typeof VmInfo>;

/** A VM file that could not be loaded; it is left untouched. */
export const ConfigProblem = z.object({ file: z.string(), reason: z.string() });
export type ConfigProblem = z.infer<typeof ConfigProblem>;

// ───────────────────────────── inputs ─────────────────────────────

/** A disk to attach. Omitted modes come from the defaults (host device → native+none, file → threads+writeback). */
export const DiskInput = z.strictObject({
  path: AbsolutePath,
  aio: AioMode.optional(),
  cache: CacheMode.optional(),
  nowait: NowaitMode.optional(),
  readOnly: z.boolean().optional(),
  queues: z.int().min(1).max(16).optional(),
  serial: DiskSerial.optional(),
  enospc: EnospcPolicy.optional(),
  /** The image format; omitted: read from the header now, and stored (never probed again). */
  format: DiskFormat.optional(),
  limits: IoLimits.optional(),
});
export type DiskInput = z.infer<typeof DiskInput>;

export const VmCreateInput = z.strictObject({
  name: VmName,
  cpus: z.int().min(1).max(64).default(1),
  memoryMiB: z
    .int()
    .min(32)
    .max(1 << 20)
    .default(512),
  firmware: Firmware.default('bios'),
  boot: BootSource.default({ kind: 'disk' }),
  disks: z.array(DiskInput).max(32).default([]),
  network: NetworkConfig.default({ user: true }),
  display: z.enum(['vnc', 'none']).default('vnc'),
  /** Absent: 'q35'. */
  machine: MachineType.optional(),
  secureBoot: z.boolean().optional(),
  tpm: z.boolean().optional(),
  cdroms: Cdroms.optional(),
  bootOrder: z.array(BootDevice).max(40).optional(),
});
export type VmCreateInput = z.input<typeof VmCreateInput>;

/** Changes to a stopped VM's settings (disks have their own methods). */
export const VmPatch = z.strictObject({
  name: VmName.optional(),
  cpus: z.int().min(1).max(64).optional(),
  memoryMiB: z
    .int()
    .min(32)
    .max(1 << 20)
    .optional(),
  firmware: Firmware.optional(),
  boot: BootSource.optional(),
  network: NetworkConfig.optional(),
  display: z.enum(['vnc', 'none']).optional(),
  machine: MachineType.optional(),
  secureBoot: z.boolean().optional(),
  tpm: z.boolean().optional(),
  cdroms: Cdroms.optional(),
  /** An empty list: back to the default order. */
  bootOrder: z.array(BootDevice).max(40).optional(),
  /** Start when Spindle starts; changeable while the VM runs. */
  autostart: z.boolean().optional(),
});

/** Disk settings changeable on a running VM (aio/cache/nowait apply live; readOnly/queues need a stopped VM). */
export const DiskPatch = z.strictObject({
  aio: AioMode.optional(),
  cache: CacheMode.optional(),
  nowait: NowaitMode.optional(),
  readOnly: z.boolean().optional(),
  queues: z.int().min(1).max(16).optional(),
  /** Changes only while the VM is stopped. */
  enospc: EnospcPolicy.optional(),
  /** Replaces the disk's I/O limits ({} removes them); changes live on a running VM. */
  limits: IoLimits.optional(),
});
export type DiskPatch = z.infer<typeof DiskPatch>;

// ───────────────────────────── snapshots ─────────────────────────────

export const SnapshotName = z.string().min(1, 'A snapshot needs a name.').max(63, 'Snapshot names are at most 63 characters.');
export const VmSnapshot = z.object({
  name: z.string(),
  /** When it was taken (ISO time). */
  date: z.string(),
  /** The disks holding it. */
  disks: z.array(z.string()),
  /** False when a disk of the VM lacks it (added after it was taken). */
  complete: z.boolean(),
});
export type VmSnapshot = z.infer<typeof VmSnapshot>;
export const SnapshotList = z.object({
  /** Oldest first. */
  snapshots: z.array(VmSnapshot),
  /** Each snapshotted disk's image size on the host now (its snapshots share the file). */
  disks: z.array(z.object({ diskId: z.string(), imageBytes: z.number() })),
});
export type SnapshotList = z.infer<typeof SnapshotList>;
