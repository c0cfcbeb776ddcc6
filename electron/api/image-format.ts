// What an image file holds, from its header, for the Add disk dialog: a raw disk, an ISO 9660
// CD/DVD image (attached as a read-only CD-ROM), or a container format Spindle cannot serve (its
// bytes are not the guest's disk: serving them raw would let a guest write destroy it).
// Signatures as QEMU's block drivers probe them (block/qcow2.c, qed.c, vdi.c, vmdk.c, vpc.c,
// vhdx.c, parallels.c; LUKS: cryptsetup's on-disk format) and ECMA-119 §8.1 for ISO 9660.
import { closeSync, openSync, readSync } from 'node:fs';

export type ImageFormat = 'raw' | 'iso9660' | 'qcow' | 'qcow2' | 'qed' | 'vdi' | 'vmdk' | 'vhd' | 'vhdx' | 'luks' | 'parallels';

const HEAD_BYTES = 0x9000;

/** The format a header (the file's first 36 KiB, or less for a small file) shows. */
export function formatOf(head: Buffer): ImageFormat {
  const at = (off: number, sig: string | Buffer) => {
    const s = typeof sig === 'string' ? Buffer.from(sig, 'latin1') : sig;
    return head.length >= off + s.length && head.subarray(off, off + s.length).equals(s);
  };
  if (at(0, 'QFI\xfb')) return head.length >= 8 && head.readUInt32BE(4) === 1 ? 'qcow' : 'qcow2';
  if (at(0, 'QED\0')) return 'qed';
  if (head.length >= 0x44 && head.readUInt32LE(0x40) === 0xbeda107f) return 'vdi';
  if (at(0, 'KDMV') || at(0, 'COWD') || at(0, '# Disk DescriptorFile')) return 'vmdk';
  if (at(0, 'conectix')) return 'vhd';
  if (at(0, 'vhdxfile')) return 'vhdx';
  if (at(0, 'LUKS\xba\xbe')) return 'luks';
  if (at(0, 'WithoutFreeSpace') || at(0, 'WithouFreSpacExt')) return 'parallels';
  // ECMA-119: volume descriptors from sector 16 (0x8000), each 'CD001' after its type byte.
  if (at(0x8001, 'CD001')) return 'iso9660';
  return 'raw';
}

/** Reads the header of an image file and names its format. */
export function imageFormat(path: string): ImageFormat {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(HEAD_BYTES);
    const n = readSync(fd, head, 0, HEAD_BYTES, 0);
    return formatOf(head.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}

const NAMES: Record<Exclude<ImageFormat, 'raw' | 'iso9660'>, string> = {
  qcow: 'a qcow (version 1) image',
  qcow2: 'a qcow2 image',
  qed: 'a QED image',
  vdi: 'a VirtualBox VDI image',
  vmdk: 'a VMware VMDK image',
  vhd: 'a Hyper-V/Virtual PC VHD image',
  vhdx: 'a Hyper-V VHDX image',
  luks: 'a LUKS-encrypted image',
  parallels: 'a Parallels image',
};

/** Why Spindle will not serve this file as a disk, or null for raw disks and ISO images. */
export function formatRefusal(path: string, format: ImageFormat): string | null {
  if (format === 'raw' || format === 'iso9660') return null;
  const convert = format === 'luks' ? '' : ` Convert it to a raw image first: qemu-img convert -O raw ${path} ${path.replace(/\.[^./]*$/, '')}.raw`;
  return `${path} is ${NAMES[format]}: Spindle serves raw disk images only, and a guest writing to the ${format} file's bytes would destroy it.${convert}`;
}
