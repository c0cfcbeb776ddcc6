// The API's host and image shapes: host block devices, the advisor's answers (FileAdvice, the
// RWF_NOWAIT probe), image headers and imports, the scratch disk. Pure; re-exported by api.ts.
import { z } from 'zod';
import { AioMode, CacheMode, DiskFormat, DiskKind, NowaitMode } from './model.js';

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
