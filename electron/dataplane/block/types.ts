// The contract between the virtio layer and the block layer: batched, zero-copy I/O over
// registered memory. Implemented by BlockBackend (electron/dataplane/block/backend.ts).

export const BlockOp = { Read: 0, Write: 1, Flush: 2, Discard: 3, WriteZeroes: 4 } as const;
export type BlockOp = (typeof BlockOp)[keyof typeof BlockOp];

/** WriteZeroes may deallocate (virtio-blk VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP). */
export const WRITE_ZEROES_MAY_UNMAP = 1;

export interface BlockDevice {
  /** The guest-visible size; changes only through resize(). */
  readonly sizeBytes: number;
  /** I/O must be aligned to this under O_DIRECT; advertised to the guest as blk_size. */
  readonly logicalBlockSize: number;
  readonly physicalBlockSize: number;
  readonly readOnly: boolean;
  /** The guest sees a volatile write cache (from the cache mode; the guest may toggle it via CONFIG_WCE). */
  writeCache: boolean;
  readonly supportsDiscard: boolean;
  readonly supportsWriteZeroes: boolean;

  /** Makes memory addressable by requests: segment offsets count from the view's first byte
   *  (its byteOffset inside its ArrayBuffer is honoured; guest RAM regions are views over mmap). */
  registerBuffer(id: number, memory: Uint8Array): void;
  unregisterBuffer(id: number): void;

  /** Starts a request in the current batch. Read/Write take their length from their segments;
   *  Discard/WriteZeroes use lengthBytes. */
  begin(tag: number, op: BlockOp, offsetBytes: number, lengthBytes?: number, flags?: number): void;
  /** Adds a data segment (part of a registered buffer) to the request begun last. */
  segment(bufferId: number, bufferOffset: number, length: number): void;
  /** Hands every request begun since the last submit to the engine in one native call. */
  submit(): void;
  /** Called once per completion batch. results[i] is 0 or -errno for tags[i].
   *  The arrays are reused after the call returns. */
  onComplete: ((tags: Uint32Array, results: Int32Array, count: number) => void) | null;

  /** Requests submitted and not yet completed. */
  readonly inFlight: number;
  /** Resolves once nothing is in flight. */
  drain(): Promise<void>;
  /** Grows the disk to `newSizeBytes` (a multiple of 512): a file grows, a block device must
   *  already have grown. Shrinking is refused with a sentence (SpindleError). In-flight I/O goes on. */
  resize(newSizeBytes: number): Promise<void>;
  /** Drains, then closes the engine and the file. */
  close(): Promise<void>;
}
