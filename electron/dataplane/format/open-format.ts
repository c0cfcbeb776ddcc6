// The format seam: a disk is opened as the format its owner says it holds (never re-probed once
// known), and the virtio device gets a BlockDevice either way. raw is the BlockBackend itself (the
// file and its engine); qcow2 is the driver in qcow2/ over a BlockBackend of the image file.
import { SpindleError } from '../../shared/errors.js';
import { BlockBackend } from '../block/backend.js';
import { QCOW2_MAGIC } from './qcow2/header.js';
import { Qcow2Device } from './qcow2/driver.js';
import { openQcow2, type BackingOpener, type Qcow2Options } from './qcow2/open.js';

import { DISK_FORMATS, type DiskFormat } from '../../shared/model.js';

export type { DiskFormat };
export type FormatDevice = BlockBackend | Qcow2Device;
export type FormatOptions = Qcow2Options;

/**
 * Opens `path` as `format`. Without a format (callers that predate the format field), the file is
 * served raw and refused when its header says it is another format, as before.
 */
export async function openFormat(path: string, format: DiskFormat | undefined, options: FormatOptions = {}): Promise<FormatDevice> {
  if (format === 'qcow2') return openQcow2(path, options, openBacking);
  const { l2CacheBytes: _l2, ...backend } = options;
  return BlockBackend.open(path, { ...backend, ...(format ? { format } : {}) });
}

/** The image file's own backend under a format device (its engine, modes and counters). */
export const fileOf = (dev: FormatDevice): BlockBackend => (dev instanceof Qcow2Device ? dev.file : dev);

/** Backing files: the format the image names, or (when it names none, as QEMU does) its header. */
const openBacking: BackingOpener = async (path, format, options, chain) => {
  if (format === 'qcow2') return openQcow2(path, options, openBacking, chain);
  const { l2CacheBytes: _l2, ...backend } = options;
  const raw = await BlockBackend.open(path, { ...backend, format: 'raw' });
  if (format === 'raw') return raw;
  let magic = 0;
  try {
    if (raw.sizeBytes >= 4) magic = (await raw.read(0, Math.min(raw.sizeBytes, 4096))).readUInt32BE(0);
  } catch (err) {
    await raw.close();
    throw err;
  }
  if (magic !== QCOW2_MAGIC) return raw;
  await raw.close();
  return openQcow2(path, options, openBacking, chain);
};

/** Refuses a format name that is neither raw nor qcow2. */
export function checkFormat(value: string, what: string): DiskFormat {
  if ((DISK_FORMATS as readonly string[]).includes(value)) return value as DiskFormat;
  throw new SpindleError('INVALID_ARGUMENT', `${what} must be raw or qcow2, not '${value}'.`);
}
