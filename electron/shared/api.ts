// The API: the one typed contract between Spindle's main process and its clients (the Svelte renderer over
// Electron IPC or the `spindle serve` WebSocket, and the CLI). Pure: no Node imports, so the
// renderer bundles it. Every request is `call(method, params)`, every stream `subscribe(topic, params)`.
// Schemas validate input (the router parses every params object with them); results and events
// are typed with the same schemas so both sides agree on shape. The persisted VM model they carry
// (VmConfig, DiskConfig and their parts) is in model.ts.
//
// Stability rule: extend, never rename.
import { z } from 'zod';
import {
  AbsolutePath,
  Accelerator,
  AioMode,
  BootSource,
  CacheMode,
  DiskFormat,
  DiskId,
  DiskKind,
  DiskSerial,
  EnospcPolicy,
  Firmware,
  MachineType,
  NetworkConfig,
  BootDevice,
  Cdroms,
  NowaitMode,
  VmConfig,
  VmId,
  VmName,
} from './model.js';
import type { SpindleErrorCode } from './errors.js';
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

const VmRef = z.strictObject({ id: VmId });
const DiskRef = z.strictObject({ vmId: VmId, diskId: DiskId });

// ───────────────────────────── host devices and advisor ─────────────────────────────

/** A whole device or a partition; `host.devices` lists each disk followed by its partitions. */
export const HostDevice = z.object({
  path: z.string(),
  name: z.string(),
  model: z.string().nullable(),
  sizeBytes: z.number(),
  rotational: z.boolean(),
  removable: z.boolean(),
  readOnly: z.boolean(),
  /** Paths of its partitions (listed as their own entries right after it). */
  partitions: z.array(z.string()),
  mountpoints: z.array(z.string()),
  holders: z.array(z.string()),
  /** False when Spindle refuses it; `reason` says why (mounted, held, holds /, no permission…). */
  usable: z.boolean(),
  reason: z.string().optional(),
  /** lsblk TYPE: disk, part, loop, rom, lvm, crypt, raid1… */
  type: z.string().optional(),
  /** Filesystem or signature on it (ext4, LVM2_member, swap), when one was found. */
  fstype: z.string().optional(),
  /** For a partition: the path of its whole disk. */
  parent: z.string().optional(),
  /** A loop device (or a partition on one): the file behind it. */
  backingFile: z.string().optional(),
});
export type HostDevice = z.infer<typeof HostDevice>;

/** What the RWF_NOWAIT probe (`advisor.probe`) found, or why it did not run. */
export const ProbeSummary = z.object({
  measured: z.boolean(),
  /** One sentence: the verdict, or why the probe was skipped. */
  summary: z.string(),
  /** Whether the probe qualified native AIO with nowait on this filesystem. */
  nowait: z.boolean().optional(),
  nowaitSupported: z.boolean().optional(),
  /** Share (0..1) of nowait writes honoured per region kind; null where the region could not be made. */
  nowaitWritesHonoured: z
    .object({ sparse: z.number().nullable(), fallocated: z.number().nullable(), written: z.number().nullable() })
    .optional(),
  /** When it was measured (ISO date); the last probe of a file is kept and returned by `advisor.inspect`. */
  at: z.string().optional(),
});
export type ProbeSummary = z.infer<typeof ProbeSummary>;

export const ImageLayer = z.object({
  path: z.string(),
  format: z.string(),
  virtualSizeBytes: z.number(),
  allocatedBytes: z.number().nullable(),
  clusterSizeBytes: z.number().nullable(),
});
export const ImageInfo = ImageLayer.extend({
  format: DiskFormat,
  /** The images under this one, nearest first. */
  backingChain: z.array(ImageLayer),
  dirty: z.boolean(),
  corrupt: z.boolean(),
});
export type ImageInfo = z.infer<typeof ImageInfo>;

/** One step of an import (qemu-img convert's own percentage). */
export const ImportProgress = z.object({ source: z.string(), dest: z.string(), percent: z.number() });
export type ImportProgress = z.infer<typeof ImportProgress>;

export const FileAdvice = z.object({
  path: z.string(),
  kind: DiskKind,
  sizeBytes: z.number(),
  allocatedBytes: z.number().optional(),
  /** Has holes (files; FIEMAP, else SEEK_HOLE). Always false for block devices. */
  sparse: z.boolean(),
  directIo: z.boolean(),
  logicalBlockSize: z.number().optional(),
  fsType: z.string().optional(),
  safeForNative: z.boolean(),
  recommended: z.object({ aio: AioMode, cache: CacheMode, nowait: NowaitMode }),
  /** Sentences for the UI badge and the CLI. */
  notes: z.array(z.string()),
  /** The host uses it (a mounted or held device, a file behind a loop device): `notes` says how. */
  inUse: z.boolean().optional(),
  holeBytes: z.number().optional(),
  holeCount: z.number().optional(),
  /** Fallocated but never written (reads as zeros, writing needs no allocation). */
  unwrittenBytes: z.number().optional(),
  /** Host devices: how the host uses it. */
  usage: z
    .object({
      mountpoints: z.array(z.string()),
      holders: z.array(z.string()),
      holdsRoot: z.boolean(),
      swap: z.boolean(),
      exclusiveOpen: z.enum(['free', 'busy', 'not-tested']),
    })
    .optional(),
  /** Set by `advisor.probe`, and by `advisor.inspect` once a probe of this file was kept. */
  probe: ProbeSummary.optional(),
  /** Image files: what the header holds ('iso9660': a CD/DVD image, attached as a read-only CD-ROM;
   *  'qcow2': served through the qcow2 driver). Other containers (vmdk…) are refused with a sentence
   *  naming the format and how to import them. */
  format: z.enum(['raw', 'iso9660', 'qcow2']).optional(),
  /** Raw and qcow2 images as disks: what the guest sees, what the host holds, the chain under it. */
  image: ImageInfo.optional(),
});
export type FileAdvice = z.infer<typeof FileAdvice>;

/** The scratch disk: a sparse image in the data directory for the aio comparison and live chart without a VM. */
export const ScratchDisk = z.object({
  path: z.string(),
  exists: z.boolean(),
  /** Null while it does not exist. */
  sizeBytes: z.number().nullable(),
});
export type ScratchDisk = z.infer<typeof ScratchDisk>;

// ───────────────────────────── stats ─────────────────────────────

export const DiskSample = z.object({
  /** null for a disk served outside a VM (scratch disk, benchmark). */
  vmId: VmId.nullable(),
  diskId: z.string(),
  readIops: z.number(),
  writeIops: z.number(),
  readMBps: z.number(),
  writeMBps: z.number(),
  /** Completion latency over the interval, microseconds (0 when idle). */
  latencyP50Us: z.number(),
  latencyP99Us: z.number(),
  /** Requests in flight at the sample instant. */
  queueDepth: z.number(),
  /** Backend CPU over the interval, in percent of one core, and cumulative seconds. */
  backendCpuPct: z.number(),
  backendCpuSec: z.number(),
  /** Requests that bounced under RWF_NOWAIT and went through the thread pool, per second (absent: not reported). */
  nowaitFallbacksPerSec: z.number().optional(),
  /** Longest time inside one io_submit/io_uring_submit over the interval, microseconds (absent: not reported). */
  submitStallMaxUs: z.number().optional(),
});
export type DiskSample = z.infer<typeof DiskSample>;

export const VmSample = z.object({
  vmId: VmId,
  /** QEMU's CPU (all its threads, /proc/PID/stat) in percent of one core, and cumulative seconds. */
  qemuCpuPct: z.number(),
  qemuCpuSec: z.number(),
});
export type VmSample = z.infer<typeof VmSample>;

/** One sampler tick (every 500 ms); 10 minutes are kept. */
export const StatsTick = z.object({ t: z.number(), intervalMs: z.number(), disks: z.array(DiskSample), vms: z.array(VmSample) });
export type StatsTick = z.infer<typeof StatsTick>;

// ───────────────────────────── benchmarks (aio comparison) ─────────────────────────────

export const BenchWorkload = z.strictObject({
  /** 'mixed': random reads and writes in one run (readPercent of them reads). */
  op: z.enum(['read', 'write', 'mixed']),
  /** Record size in bytes (16k, 64k, 256k, or 20M sequential transfers). */
  recordBytes: z
    .int()
    .min(512)
    .max(64 << 20),
  /** Random offsets instead of sequential ones (a guest-like profile); 'mixed' is always random. */
  random: z.boolean().optional(),
  /** Requests in flight for this workload (default: the run's iodepth). */
  iodepth: z.int().min(1).max(64).optional(),
  /** For 'mixed': the share of reads, percent (default 70). */
  readPercent: z.int().min(1).max(99).optional(),
});
export const BenchTarget = z.discriminatedUnion('kind', [
  /** The scratch image in the data directory. */
  z.strictObject({ kind: z.literal('scratch') }),
  z.strictObject({ kind: z.literal('path'), path: AbsolutePath }),
  /** A disk of a stopped VM (refused while the VM runs). */
  z.strictObject({ kind: z.literal('vmDisk'), vmId: VmId, diskId: DiskId }),
]);
/** One row of the comparison: an aio mode, and for `native` whether requests go with RWF_NOWAIT
 *  (a bounced one is re-issued through the thread pool). */
export const BenchVariant = z.strictObject({ aio: AioMode, nowait: z.boolean().default(false) });
export type BenchVariant = z.infer<typeof BenchVariant>;
export const BenchStartInput = z.strictObject({
  target: BenchTarget,
  /** Plain modes (no nowait); ignored when `variants` is given. */
  modes: z.array(AioMode).min(1).default(['threads', 'native', 'io_uring']),
  /** The rows to measure; default: threads, native, native+nowait, io_uring. */
  variants: z.array(BenchVariant).min(1).max(8).optional(),
  cache: CacheMode.default('none'),
  workloads: z.array(BenchWorkload).min(1).optional(),
  /** Bytes moved per (mode, workload) run (default 64 MiB; at least one record). */
  bytesPerRun: z
    .int()
    .min(1 << 20)
    .max(64 * 2 ** 30)
    .optional(),
  /** Requests in flight per run (default 1: iozone and dd keep one request in flight). */
  iodepth: z.int().min(1).max(64).optional(),
  /** How many times the whole table is measured (default 1): the spread of the repeats shows how steady each cell is. */
  repeats: z.int().min(1).max(5).optional(),
});
export const BenchRow = z.object({
  mode: AioMode,
  op: z.enum(['read', 'write', 'mixed']),
  recordBytes: z.number(),
  mbps: z.number(),
  iops: z.number(),
  /** Backend CPU seconds spent on this run. */
  cpuSec: z.number(),
  /** native with RWF_NOWAIT (its own row in the table). */
  nowait: z.boolean().optional(),
  /** KiB/s (1024 bytes), iozone's unit for the record-size columns. */
  kbps: z.number().optional(),
  bytes: z.number().optional(),
  seconds: z.number().optional(),
  /** Requests that bounced under nowait and went through the thread pool. */
  nowaitFallbacks: z.number().optional(),
  /** Longest single io_submit during the run, microseconds. */
  submitStallMaxUs: z.number().optional(),
  errors: z.number().optional(),
  /** Which repeat of the table this row belongs to (0-based; absent: 0). */
  repeat: z.number().optional(),
  /** A guest-like profile (random offsets): not one of the 2009 post's sequential columns. */
  random: z.boolean().optional(),
  /** Requests in flight in this run, when the workload set its own. */
  iodepth: z.number().optional(),
  /** For 'mixed': the share of reads, percent. */
  readPercent: z.number().optional(),
});
export type BenchRow = z.infer<typeof BenchRow>;
export const BenchState = z.enum(['running', 'done', 'cancelled', 'failed']);
export const BenchResult = z.object({
  benchId: z.string(),
  state: BenchState,
  rows: z.array(BenchRow),
  error: z.string().optional(),
  /** How it was measured, for the UI to state (cache, O_DIRECT, requests in flight, bytes per run, target). */
  settings: z
    .object({
      path: z.string(),
      cache: CacheMode,
      directIo: z.boolean(),
      iodepth: z.number(),
      bytesPerRun: z.number(),
      /** The target's region was made sparse again (holes punched) before every write run, so every variant writes to a fresh sparse file. */
      freshSparseWrites: z.boolean(),
      /** The region was saved before and written back after (a VM's disk). */
      preserved: z.boolean(),
    })
    .optional(),
  /** What was measured and when, for the table and the CSV. */
  info: z
    .object({
      /** The file or device measured. */
      disk: z.string(),
      /** The VM disk it is, when it is one. */
      vmId: z.string().optional(),
      diskId: z.string().optional(),
      /** Its size in bytes when the run started. */
      sizeBytes: z.number(),
      /** When the run started (ISO date). */
      startedAt: z.string(),
      /** The host kernel (uname -r). */
      kernel: z.string(),
    })
    .optional(),
});
export type BenchResult = z.infer<typeof BenchResult>;
export const BenchProgress = z.object({
  benchId: z.string(),
  state: BenchState,
  done: z.number(),
  total: z.number(),
  current: z
    .object({ mode: AioMode, op: z.enum(['read', 'write', 'mixed']), recordBytes: z.number(), nowait: z.boolean().optional() })
    .optional(),
  /** done / total, including the run in progress' share (0..1). */
  fraction: z.number().optional(),
  /** The step in words ("native+nowait: write 64k"). */
  step: z.string().optional(),
  error: z.string().optional(),
  /** The row just finished, if any. */
  row: BenchRow.optional(),
});

// ───────────────────────────── app info ─────────────────────────────

export const AppInfo = z.object({
  version: z.string(),
  accelerator: Accelerator,
  /** Set when Spindle will use TCG (no usable /dev/kvm): shown as a visible warning. */
  acceleratorWarning: z.string().optional(),
  qemu: z.object({ found: z.boolean(), path: z.string().optional(), version: z.string().optional(), message: z.string().optional() }),
  uefiAvailable: z.boolean(),
  /** Debian's OVMF secure-boot build is installed (Secure Boot can be chosen). */
  secureBootAvailable: z.boolean().optional(),
  /** swtpm is installed (a VM can have a TPM). */
  tpmAvailable: z.boolean().optional(),
  configDir: z.string(),
  /** Where images Spindle makes (the scratch disk) live. */
  dataDir: z.string().optional(),
});
export type AppInfo = z.infer<typeof AppInfo>;

// ───────────────────────────── snapshots and login autostart ─────────────────────────────

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

export const LoginAutostart = z.object({ enabled: z.boolean(), path: z.string(), command: z.string().optional() });
export type LoginAutostart = z.infer<typeof LoginAutostart>;

// ───────────────────────────── methods ─────────────────────────────

const Empty = z.strictObject({});
const Ok = z.object({ ok: z.literal(true) });

function method<P extends z.ZodType, R extends z.ZodType>(params: P, result: R) {
  return { params, result };
}

export const methods = {
  'app.info': method(Empty, AppInfo),

  'vm.list': method(Empty, z.object({ vms: z.array(VmInfo), problems: z.array(ConfigProblem) })),
  'vm.get': method(VmRef, VmInfo),
  'vm.create': method(VmCreateInput, VmInfo),
  'vm.update': method(z.strictObject({ id: VmId, patch: VmPatch }), VmInfo),
  /** Refused while running. `deleteDisks`: also the images Spindle made for it under its data
   *  directory and its UEFI variables; files attached from elsewhere, host devices and images
   *  another VM uses are kept, each with the reason. Without it no file is touched. */
  'vm.delete': method(
    z.strictObject({ id: VmId, deleteDisks: z.boolean().optional() }),
    Ok.extend({ deletedFiles: z.array(z.string()), keptFiles: z.array(z.object({ path: z.string(), reason: z.string() })) }),
  ),
  /** `allowBaseWrites`: start although a disk is the base of a linked clone (refused otherwise, code BASE_IN_USE). */
  'vm.start': method(z.strictObject({ id: VmId, allowBaseWrites: z.boolean().optional() }), VmInfo),
  /** A new stopped VM from a stopped one: every disk copied (sparse), or with `linked` a qcow2
   *  overlay on each (the source's images become their read-only base); new serials, MAC and UEFI variables. */
  'vm.clone': method(z.strictObject({ id: VmId, name: VmName, linked: z.boolean().default(false) }), VmInfo),

  /** Internal qcow2 snapshots of every writable disk, under one name (raw disks refused). Create and
   *  delete also on a running VM: its disks drain and are released for that instant. */
  'snapshot.list': method(VmRef, SnapshotList),
  'snapshot.create': method(z.strictObject({ id: VmId, name: SnapshotName }), SnapshotList),
  /** Every disk back to the snapshot (stopped VM); what was written since is lost. */
  'snapshot.revert': method(z.strictObject({ id: VmId, name: SnapshotName }), SnapshotList),
  'snapshot.delete': method(z.strictObject({ id: VmId, name: SnapshotName }), SnapshotList),

  /** "Start Spindle at login": the XDG autostart entry ($XDG_CONFIG_HOME/autostart/spindle.desktop). */
  'app.autostart.get': method(Empty, LoginAutostart),
  /** Writes the entry (enabled) or removes it; nothing is written unless asked. */
  'app.autostart.set': method(z.strictObject({ enabled: z.boolean() }), LoginAutostart),
  /** ACPI power button, then force off after timeoutMs (default 30 s). Resolves when stopped;
   *  `forced` says the guest did not power off in time and was forced off. */
  'vm.shutdown': method(
    z.strictObject({ id: VmId, timeoutMs: z.int().min(0).max(600_000).optional() }),
    VmInfo.extend({ forced: z.boolean().optional() }),
  ),
  'vm.forceOff': method(VmRef, VmInfo),
  'vm.pause': method(VmRef, VmInfo),
  'vm.resume': method(VmRef, VmInfo),
  'vm.reset': method(VmRef, VmInfo),
  /** Inserts an ISO into CD-ROM drive `drive` (cd0-cd3), or ejects it (path null): on a running VM
   *  through QMP, kept in the config (except ejecting the boot ISO cd0, which lasts until the VM stops). */
  'vm.media': method(z.strictObject({ id: VmId, drive: z.enum(['cd0', 'cd1', 'cd2', 'cd3']), path: AbsolutePath.nullable() }), VmInfo),

  /** Stopped VM: adds to its config. Running VM: hot-plug (chardev-add + device_add). */
  'disk.attach': method(z.strictObject({ vmId: VmId, disk: DiskInput }), VmInfo),
  /** Running VM: device_del, waits for DEVICE_DELETED, then stops the disk server. */
  'disk.detach': method(DiskRef, VmInfo),
  /** aio/cache/nowait switch live on a running VM (drain, reopen, swap engine, resume). */
  'disk.set': method(z.strictObject({ vmId: VmId, diskId: DiskId, patch: DiskPatch }), VmInfo),

  /** Grows a disk (raw or qcow2), live on a running VM (the guest is told through a virtio
   *  config-change) or the image itself on a stopped one; shrinking is refused with a sentence. */
  'disk.resize': method(
    z.strictObject({
      vmId: VmId,
      diskId: DiskId,
      sizeBytes: z
        .int()
        .min(512)
        .max(2 ** 53 - 1),
    }),
    VmInfo,
  ),

  /** Whole devices, each followed by its partitions; in-use ones have usable: false and a reason. */
  'host.devices': method(Empty, z.object({ devices: z.array(HostDevice) })),

  /** Never writes to the path. */
  'advisor.inspect': method(z.strictObject({ path: AbsolutePath }), FileAdvice),
  /** Inspect plus a short probe, on a temporary file beside it, of whether RWF_NOWAIT writes bounce on its filesystem. */
  'advisor.probe': method(z.strictObject({ path: AbsolutePath }), FileAdvice),
  /** A new raw image (never overwrites; size a multiple of 512), sparse or preallocated; answers with its advice. */
  'advisor.createImage': method(
    z.strictObject({
      path: AbsolutePath,
      sizeBytes: z
        .int()
        .min(1 << 20)
        .max(2 ** 50),
      preallocate: z.boolean(),
      /** Omitted: raw (Spindle's fastest path; sparse on the host). */
      format: DiskFormat.optional(),
      /** qcow2 only: a power of two from 512 B to 2 MiB. */
      clusterSizeBytes: z
        .int()
        .min(512)
        .max(2 * 1024 * 1024)
        .optional(),
      /** qcow2 only: a raw or qcow2 image this one is a copy-on-write overlay of. */
      backing: AbsolutePath.optional(),
    }),
    FileAdvice,
  ),
  /** Converts a vmdk, vdi, vhdx, vhd, qcow2 or raw image into a new raw or qcow2 image (qemu-img
   *  convert; never overwrites). Progress on the 'image.progress' stream; answers with the new image's advice. */
  'image.import': method(z.strictObject({ source: AbsolutePath, dest: AbsolutePath, format: DiskFormat.default('raw') }), FileAdvice),
  /** Allocates the holes of an existing image in place (fallocate; data and size unchanged). */
  'advisor.preallocate': method(z.strictObject({ path: AbsolutePath }), FileAdvice),

  /** The scratch disk's path and whether it exists; `create` makes it (sparse) if it does not. */
  'scratch.get': method(z.strictObject({ create: z.boolean().optional() }), ScratchDisk),

  /** Ticks kept in memory (10 minutes), optionally only those after sinceMs. */
  'stats.history': method(z.strictObject({ sinceMs: z.number().optional() }), z.object({ ticks: z.array(StatsTick) })),

  /** Refused for a disk of a running VM (with the reason) and while another comparison runs. */
  'bench.start': method(BenchStartInput, z.object({ benchId: z.string() })),
  /** Stops the run in progress promptly (the disk server is stopped, the target's region restored). */
  'bench.cancel': method(z.strictObject({ benchId: z.string() }), Ok),
  'bench.result': method(z.strictObject({ benchId: z.string() }), BenchResult),
  /** Completed comparisons of one disk (its file or device), newest first; kept on disk in the data directory. */
  'bench.history': method(z.strictObject({ target: BenchTarget }), z.object({ runs: z.array(BenchResult) })),

  /** Bytes typed into the serial console (base64, at most 64 KiB decoded). */
  'console.serialInput': method(z.strictObject({ vmId: VmId, dataBase64: z.base64().max(87_384) }), Ok),
  /** Recent serial output (base64), so a console opened late shows what came before. */
  'console.serialBacklog': method(VmRef, z.object({ dataBase64: z.string() })),
  /** Whether a VNC display can be bridged; the transport then opens a binary channel
   *  (ws: `/vnc/<vmId>?token=…`) and the main process pipes it to QEMU's VNC unix socket
   *  (manager.vncSocketPath(vmId), main-process only). */
  'console.vnc': method(VmRef, z.object({ available: z.boolean(), reason: z.string().optional() })),
} as const;

export type Methods = typeof methods;
export type MethodName = keyof Methods;
/** What a caller may send (defaults not yet applied). */
export type Params<M extends MethodName> = z.input<Methods[M]['params']>;
/** What the router hands to the backend (after validation and defaults). */
export type ParsedParams<M extends MethodName> = z.output<Methods[M]['params']>;
export type Result<M extends MethodName> = z.output<Methods[M]['result']>;

// ───────────────────────────── event streams ─────────────────────────────

export const VmEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('changed'), vm: VmInfo }),
  z.object({ type: z.literal('deleted'), id: VmId }),
]);
export const DiskEvent = z.object({
  vmId: VmId.nullable(),
  diskId: z.string(),
  level: z.enum(['info', 'warning', 'error']),
  message: z.string(),
  t: z.number(),
});

export const topics = {
  /** Every VM change (state, disks, config) carries the full VmInfo. */
  vms: { params: Empty, event: VmEvent },
  /** Disk server events: broken queue, reconnect, mode switched, nowait fallback… */
  'disk.events': { params: Empty, event: DiskEvent },
  /** One tick every 500 ms. */
  stats: { params: Empty, event: StatsTick },
  /** Serial output of one VM, base64. */
  'console.serial': { params: VmRef, event: z.object({ vmId: VmId, dataBase64: z.string() }) },
  /** Progress of every import in progress (filter by dest). */
  'image.progress': { params: Empty, event: ImportProgress },
  /** Progress of one benchmark. */
  'bench.progress': { params: z.strictObject({ benchId: z.string() }), event: BenchProgress },
} as const;

export type Topics = typeof topics;
export type TopicName = keyof Topics;
export type TopicParams<T extends TopicName> = z.input<Topics[T]['params']>;
export type TopicEvent<T extends TopicName> = z.output<Topics[T]['event']>;

// ───────────────────────────── errors and the client shape ─────────────────────────────

/** Every failure a client sees: `message` is a sentence for the user. */
export interface ApiError {
  code: SpindleErrorCode;
  message: string;
  errno?: string;
}
export const ApiErrorSchema = z.object({ code: z.string(), message: z.string(), errno: z.string().optional() });

export type CallOutcome<M extends MethodName> = { ok: true; result: Result<M> } | { ok: false; error: ApiError };

/** What the renderer and CLI program against; each transport implements it. */
export interface SpindleApi {
  call<M extends MethodName>(method: M, params: Params<M>): Promise<Result<M>>;
  /** Returns an unsubscribe function. */
  subscribe<T extends TopicName>(topic: T, params: TopicParams<T>, listener: (event: TopicEvent<T>) => void): () => void;
}

// Suggested wire envelopes for message transports (WebSocket, IPC). Request ids are the client's.
export const WireRequest = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('call'), id: z.number(), method: z.string(), params: z.unknown() }),
  z.object({ kind: z.literal('subscribe'), id: z.number(), topic: z.string(), params: z.unknown() }),
  z.object({ kind: z.literal('unsubscribe'), id: z.number() }),
]);
export type WireRequest = z.infer<typeof WireRequest>;
export type WireMessage =
  | { kind: 'result'; id: number; ok: true; result: unknown }
  | { kind: 'result'; id: number; ok: false; error: ApiError }
  /** `id` is the subscribe request's id. */
  | { kind: 'event'; id: number; event: unknown };
