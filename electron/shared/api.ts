// The API: the one typed contract between Spindle's main process and its clients (the Svelte renderer over
// Electron IPC or the `spindle serve` WebSocket, and the CLI). Pure: no Node imports, so the
// renderer bundles it. Every request is `call(method, params)`, every stream `subscribe(topic, params)`.
// Schemas validate input (the router parses every params object with them); results and events
// are typed with the same schemas so both sides agree on shape. The persisted VM model they carry
// (VmConfig, DiskConfig and their parts) is in model.ts. The schemas live by domain in api-vm.ts,
// api-host.ts, api-stats.ts, api-bench.ts and api-app.ts; this file holds the methods and topics
// tables and re-exports them all, so callers import only from here.
//
// Stability rule: extend, never rename.
import { z } from 'zod';
import { AbsolutePath, DiskFormat, DiskId, VmId, VmName } from './model.js';
import type { SpindleErrorCode } from './errors.js';
import { AppInfo, LoginAutostart } from './api-app.js';
import { BenchProgress, BenchResult, BenchStartInput, BenchTarget } from './api-bench.js';
import { FileAdvice, HostDevice, ImportProgress, ScratchDisk } from './api-host.js';
import { StatsTick } from './api-stats.js';
import { ConfigProblem, DiskInput, DiskPatch, SnapshotList, SnapshotName, VmCreateInput, VmInfo, VmPatch } from './api-vm.js';

export * from './api-vm.js';
export * from './api-host.js';
export * from './api-stats.js';
export * from './api-bench.js';
export * from './api-app.js';

const VmRef = z.strictObject({ id: VmId });
const DiskRef = z.strictObject({ vmId: VmId, diskId: DiskId });

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
