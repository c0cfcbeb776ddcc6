// Recognises disk image formats other than raw by their headers (and, for VHD and DMG, their
// footers), so Spindle never serves a container's bytes as a disk: a guest writing a qcow2 file
// seen as raw destroys it. raw and qcow2 are served (dataplane/format/); the rest are refused. Magic numbers from each format's specification as QEMU's probes read
// them (block/qcow2.c, qcow.c, qed.c, vdi.c, vmdk.c, vpc.c, vhdx.c, crypto/block-luks.c,
// parallels.c, bochs.c, cloop.c, dmg.c). It also tells an ISO 9660 CD/DVD image (ECMA-119 §8.1)
// from a plain raw disk, for the UI: both are served raw, an ISO as a read-only CD-ROM.
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { SpindleError, errnoOf } from '../../shared/errors.js';
import { geometry, readAt } from '../native/os.js';

export type ImageFormat = 'qcow' | 'qcow2' | 'qed' | 'vdi' | 'vmdk' | 'vpc' | 'vhdx' | 'luks' | 'parallels' | 'bochs' | 'cloop' | 'dmg';

export const FORMAT_NAMES: Record<ImageFormat, string> = {
  qcow: 'qcow (version 1)',
  qcow2: 'qcow2',
  qed: 'QED',
  vdi: 'VirtualBox (vdi)',
  vmdk: 'VMware (vmdk)',
  vpc: 'Virtual PC (vhd/vpc)',
  vhdx: 'Hyper-V (vhdx)',
  luks: 'LUKS-encrypted',
  parallels: 'Parallels',
  bochs: 'Bochs',
  cloop: 'cloop (compressed loop)',
  dmg: 'Apple disk image (dmg)',
};

/** Enough for every header above and for ISO 9660's first volume descriptor (sector 16). */
const HEAD_BYTES = 0x9000;
const FOOTER_BYTES = 512;

const ascii = (b: Buffer, at: number, s: string): boolean => b.length >= at + s.length && b.toString('latin1', at, at + s.length) === s;

/** A fixed VHD has no header, only a 512-byte footer: check its cookie, version and checksum. */
function isVhdFooter(f: Buffer, fileSize: number): boolean {
  if (f.length !== FOOTER_BYTES || !ascii(f, 0, 'conectix') || f.readUInt32BE(12) !== 0x00010000) return false;
  let sum = 0;
  for (let i = 0; i < FOOTER_BYTES; i++) if (i < 64 || i >= 68) sum += f[i]!;
  const currentSize = Number(f.readBigUInt64BE(48));
  return ~sum >>> 0 === f.readUInt32BE(64) && currentSize <= fileSize;
}

/** A DMG's "koly" trailer: magic, version 4, header size 512. */
const isDmgTrailer = (f: Buffer): boolean =>
  f.length === FOOTER_BYTES && ascii(f, 0, 'koly') && f.readUInt32BE(4) === 4 && f.readUInt32BE(8) === 512;

/** The format `head` (the first bytes) and `tail` (the last 512, or empty) show, or null for raw. */
export function formatOf(head: Buffer, tail: Buffer, sizeBytes: number): ImageFormat | null {
  if (ascii(head, 0, 'QFI\xfb') && head.length >= 8) return head.readUInt32BE(4) === 1 ? 'qcow' : 'qcow2';
  if (ascii(head, 0, 'QED\0')) return 'qed';
  if (head.length >= 0x44 && head.readUInt32LE(0x40) === 0xbeda107f) return 'vdi';
  if (ascii(head, 0, 'KDMV') || ascii(head, 0, 'COWD') || ascii(head, 0, '# Disk DescriptorFile')) return 'vmdk';
  if (ascii(head, 0, 'vhdxfile')) return 'vhdx';
  if (ascii(head, 0, 'LUKS\xba\xbe')) return 'luks';
  if (ascii(head, 0, 'WithoutFreeSpace') || ascii(head, 0, 'WithouFreSpacExt')) return 'parallels';
  if (ascii(head, 0, 'Bochs Virtual HD Image')) return 'bochs';
  if (ascii(head, 0, '#!/bin/sh\n#V2.0 Format\nmodprobe cloop')) return 'cloop';
  if (ascii(head, 0, 'conectix') || isVhdFooter(tail, sizeBytes)) return 'vpc';
  if (isDmgTrailer(tail)) return 'dmg';
  return null;
}

/** ECMA-119 §8.1: volume descriptors start at sector 16 (0x8000), each with 'CD001' after its type byte. */
export const isIso9660 = (head: Buffer): boolean => ascii(head, 0x8001, 'CD001');

/** What a raw image holds: an ISO 9660 CD/DVD image or a plain disk. */
export type RawContent = 'raw' | 'iso9660';

/** A container format, or for raw bytes what they hold. */
export function contentOf(head: Buffer, tail: Buffer, sizeBytes: number): ImageFormat | RawContent {
  return formatOf(head, tail, sizeBytes) ?? (isIso9660(head) ? 'iso9660' : 'raw');
}

function headAndTail(fd: number): [Buffer, Buffer, number] {
  const st = fstatSync(fd);
  const size = st.isBlockDevice() ? geometry(fd).sizeBytes : st.size;
  const head = readAt(fd, 0, Math.min(HEAD_BYTES, size));
  const tail = size >= FOOTER_BYTES * 2 ? readAt(fd, size - FOOTER_BYTES, FOOTER_BYTES) : Buffer.alloc(0);
  return [head, tail, size];
}

/** The format of what `fd` holds (any readable fd, O_DIRECT too), or null for raw. */
export function detectFormatOfFd(fd: number): ImageFormat | null {
  return formatOf(...headAndTail(fd));
}

/** Opens `path` read-only for a moment, with O_DIRECT where the filesystem allows, so the header
 *  never lands in the page cache. */
function withReadFd<T>(path: string, fn: (fd: number) => T): T {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_DIRECT);
  } catch (err) {
    if (errnoOf(err) !== 'EINVAL') throw err;
    fd = openSync(path, constants.O_RDONLY);
  }
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/** The format of the file or device at `path`, or null for raw. */
export function detectFormat(path: string): ImageFormat | null {
  return withReadFd(path, detectFormatOfFd);
}

/** The format of the file or device at `path`, or for raw bytes what they hold (the UI's view). */
export function detectContent(path: string): ImageFormat | RawContent {
  return withReadFd(path, (fd) => contentOf(...headAndTail(fd)));
}

/** The refusal for a non-raw image, naming the format and how to get a raw image from it. */
export function nonRawError(path: string, format: ImageFormat): SpindleError {
  const name = FORMAT_NAMES[format];
  // Beside the image (a device's copy goes to the working directory), never the input's own name.
  const stem = basename(path, extname(path)) || 'disk';
  const dir = path.startsWith('/dev/') ? '.' : dirname(path);
  const target = join(dir, `${stem}${extname(path) === '.raw' ? '.converted' : ''}.raw`);
  const convert = `qemu-img convert -f ${format} -O raw ${path} ${target}`;
  const sentence =
    format === 'luks'
      ? `${path} is a LUKS-encrypted volume; Spindle serves raw and qcow2 images and would hand the guest its ciphertext. Open it on the host (cryptsetup open ${path} NAME) and give Spindle /dev/mapper/NAME, or convert it to a raw image with qemu-img convert.`
      : format === 'qcow2'
        ? `${path} is a qcow2 image; Spindle serves it only when told its format is qcow2 (spindle export --format qcow2), since a guest writing it as raw bytes would destroy it.`
        : `${path} is a ${name} image; Spindle serves raw and qcow2 images, and a guest writing it as raw bytes would destroy it. Convert it with ${convert} and use ${target}.`;
  return new SpindleError('UNSUPPORTED_FORMAT', sentence);
}

/** The format Spindle serves `path` as, from its header: raw or qcow2; any other is refused with
 *  nonRawError's sentence. For a disk first added: once known, a disk's format is never probed again. */
export function servableFormat(path: string): 'raw' | 'qcow2' {
  const format = detectFormat(path);
  if (format === null) return 'raw';
  if (format === 'qcow2') return 'qcow2';
  throw nonRawError(path, format);
}

/** Throws UNSUPPORTED_FORMAT when `fd` (readable, O_DIRECT or not) holds a non-raw image. */
export function refuseNonRawFd(path: string, fd: number): void {
  const format = detectFormatOfFd(fd);
  if (format) throw nonRawError(path, format);
}
