// A disk's format, decided once when it is added to a VM: from its header, or as the user says.
// Stored in the VM config and never probed again, so a raw disk whose guest wrote a qcow2 header
// stays raw (QEMU's CVE-2008-2004: probing on every open let a guest make its raw disk a qcow2
// with a backing file of its choosing, reading any host file).
import { FORMAT_NAMES, detectFormat, nonRawError } from '../../dataplane/block/format-detect.js';
import { SpindleError } from '../../shared/errors.js';
import type { DiskFormat } from '../../shared/model.js';

/** The format to store for `path`: `requested` when given and possible, else the header's; other
 *  container formats are refused with a sentence that says how to import them. */
export function diskFormatOf(path: string, requested?: DiskFormat): DiskFormat {
  const found = detectFormat(path);
  // Raw as the user asks, as QEMU's format=raw: the bytes are served as they are.
  if (requested === 'raw') return 'raw';
  if (found === 'qcow2') return 'qcow2';
  if (requested === 'qcow2')
    throw new SpindleError(
      'UNSUPPORTED_FORMAT',
      `${path} is not a qcow2 image (its header says ${found ? FORMAT_NAMES[found] : 'raw'}); ${found ? `convert it with spindle import ${path} NEW.qcow2 --format qcow2` : 'attach it with format raw, or convert it with spindle import --format qcow2'}.`,
    );
  if (found === 'luks') throw nonRawError(path, found); // opened with cryptsetup, not converted
  if (found)
    throw new SpindleError(
      'UNSUPPORTED_FORMAT',
      `${path} is a ${FORMAT_NAMES[found]} image; Spindle serves raw and qcow2 disks. Convert it with spindle import ${path} NEW.img (a raw image; add --format qcow2 for a qcow2), then attach the new image.`,
    );
  return 'raw';
}
