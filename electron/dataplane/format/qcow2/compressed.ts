// Compressed clusters (QEMU docs/interop/qcow2.txt, "Compressed Clusters Descriptor"): raw deflate
// (window bits 12) as QEMU writes it, or zstd when the header says so and this Node has it.
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { SpindleError } from '../../../shared/errors.js';

const inflateRaw = promisify(zlib.inflateRaw);
type Decompress = (buf: Buffer, opts: { maxOutputLength: number }) => Promise<Buffer>;
const zstd = (zlib as unknown as { zstdDecompress?: (b: Buffer, o: object, cb: (e: Error | null, r: Buffer) => void) => void })
  .zstdDecompress;
const zstdDecompress: Decompress | null = zstd ? (promisify(zstd) as unknown as Decompress) : null;

/** Whether compression type `type` (0 deflate, 1 zstd) can be read here; else the refusal. */
export function compressionRefusal(path: string, type: number): SpindleError | null {
  if (type === 0 || (type === 1 && zstdDecompress)) return null;
  return new SpindleError(
    'UNSUPPORTED_FORMAT',
    `${path} holds zstd-compressed clusters, and this runtime's zlib (Node ${process.version}) has no zstd. Recompress it with deflate: qemu-img convert -O qcow2 -c -o compression_type=zlib ${path} NEW.qcow2 (or without -c to store it uncompressed).`,
  );
}

/** One cluster of `clusterSize` bytes from its compressed bytes. */
export async function decompressCluster(data: Buffer, clusterSize: number, type: number): Promise<Buffer> {
  let out: Buffer;
  try {
    out =
      type === 1 && zstdDecompress
        ? await zstdDecompress(data, { maxOutputLength: clusterSize })
        : await inflateRaw(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize });
  } catch (err) {
    throw new SpindleError('IO_ERROR', `A compressed cluster does not decompress: ${(err as Error).message}.`);
  }
  if (out.length < clusterSize)
    throw new SpindleError('IO_ERROR', `A compressed cluster decompresses to ${out.length} bytes, not ${clusterSize}.`);
  return out.subarray(0, clusterSize);
}
