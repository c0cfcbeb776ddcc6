// What an image is as a disk: its format, the size the guest sees, the bytes it takes on the host,
// its cluster size and the images it rests on (backing chain). qcow2 metadata is read by QEMU's own
// `qemu-img info --backing-chain` with the stored or detected format given (never probed); raw is
// what stat and the allocation scan say.
import { qemuImgChain } from '../images/qemu-img.js';
import type { DiskFormat } from '../../shared/model.js';

export interface ImageLayer {
  path: string;
  format: string;
  virtualSizeBytes: number;
  /** Bytes the file takes on the host (qemu-img's actual-size), when known. */
  allocatedBytes: number | null;
  clusterSizeBytes: number | null;
}

export interface ImageInfo extends ImageLayer {
  format: DiskFormat;
  /** The images under this one, nearest first (empty: none). */
  backingChain: ImageLayer[];
  /** qcow2: the image was not closed cleanly or is marked corrupt (qemu-img check repairs leaks). */
  dirty: boolean;
  corrupt: boolean;
  /** Sentences: what the format means for the aio advice. */
  notes: string[];
}

const QCOW2_NOTE =
  'qcow2: writes to clusters not yet allocated grow the file (allocating writes: new data and metadata), rewrites of allocated clusters are in place; create with --preallocate metadata or falloc to make more writes in place.';

/** `raw`: the size and allocation the caller measured. */
export async function imageInfo(
  path: string,
  format: DiskFormat,
  raw: { sizeBytes: number; allocatedBytes: number | null },
): Promise<ImageInfo> {
  if (format === 'raw')
    return {
      path,
      format,
      virtualSizeBytes: raw.sizeBytes,
      allocatedBytes: raw.allocatedBytes,
      clusterSizeBytes: null,
      backingChain: [],
      dirty: false,
      corrupt: false,
      notes: [],
    };
  const [top, ...below] = await qemuImgChain(path, 'qcow2');
  const layer = (i: NonNullable<typeof top>): ImageLayer => ({
    path: i.filename,
    format: i.format,
    virtualSizeBytes: i['virtual-size'],
    allocatedBytes: i['actual-size'] ?? null,
    clusterSizeBytes: i['cluster-size'] ?? null,
  });
  const notes = [QCOW2_NOTE];
  if (below.length)
    notes.push(
      `It is an overlay over ${below.length} backing image(s), read-only while it is in use: reads of clusters it has not written go down the chain.`,
    );
  const corrupt = top!['format-specific']?.data?.corrupt === true;
  const dirty = top!['dirty-flag'] === true;
  if (corrupt) notes.push('The image is marked corrupt: run qemu-img check -r all on a copy before using it.');
  return { ...layer(top!), format, backingChain: below.map(layer), dirty, corrupt, notes };
}
