// A TEST DOUBLE for the block layer: a BlockDevice (electron/dataplane/block/types.ts) whose disk is a
// Uint8Array. The real BlockBackend is tested on real files (O_DIRECT, loop devices) in
// tests/native by another helper; the virtio unit tests need a backend whose requests they can
// inspect and whose completions they can time exactly. It is strict: a segment outside a
// registered buffer or a request past the end of the disk throws, so a device bug that would
// touch memory it must not surfaces in the tests.
import { BlockOp, type BlockDevice } from '../../../electron/dataplane/block/types.js';

export interface RecordedRequest {
  tag: number;
  op: BlockOp;
  offset: number;
  length: number;
  flags: number;
  segments: { id: number; offset: number; length: number }[];
}

export interface MemoryBlockOptions {
  sizeBytes?: number;
  logicalBlockSize?: number;
  physicalBlockSize?: number;
  readOnly?: boolean;
  writeCache?: boolean;
  supportsDiscard?: boolean;
  supportsWriteZeroes?: boolean;
  /** Complete submitted requests on the next turn of the event loop (default: only on completeAll()). */
  autoComplete?: boolean;
}

export class MemoryBlockDevice implements BlockDevice {
  readonly sizeBytes: number;
  readonly logicalBlockSize: number;
  readonly physicalBlockSize: number;
  readonly readOnly: boolean;
  writeCache: boolean;
  readonly supportsDiscard: boolean;
  readonly supportsWriteZeroes: boolean;
  onComplete: ((tags: Uint32Array, results: Int32Array, count: number) => void) | null = null;

  readonly disk: Uint8Array;
  readonly buffers = new Map<number, Uint8Array>();
  /** Every request ever begun, in order. */
  readonly log: RecordedRequest[] = [];
  submits = 0;
  /** Result to give the next completed request of an op instead of doing it (e.g. -5 for EIO). */
  readonly failOp = new Map<BlockOp, number>();
  autoComplete: boolean;

  private building: RecordedRequest[] = [];
  private pending: RecordedRequest[] = [];
  private drainWaiters: (() => void)[] = [];

  /** The test disk is one fixed array: growing it is not something these tests exercise. */
  resize(newSizeBytes: number): Promise<void> {
    return Promise.reject(new Error(`MemoryBlockDevice keeps its ${this.sizeBytes} bytes; it cannot become ${newSizeBytes}`));
  }

  constructor(opts: MemoryBlockOptions = {}) {
    this.sizeBytes = opts.sizeBytes ?? 1 << 20;
    this.logicalBlockSize = opts.logicalBlockSize ?? 512;
    this.physicalBlockSize = opts.physicalBlockSize ?? 4096;
    this.readOnly = opts.readOnly ?? false;
    this.writeCache = opts.writeCache ?? true;
    this.supportsDiscard = opts.supportsDiscard ?? true;
    this.supportsWriteZeroes = opts.supportsWriteZeroes ?? true;
    this.autoComplete = opts.autoComplete ?? false;
    this.disk = new Uint8Array(this.sizeBytes);
  }

  get inFlight(): number {
    return this.pending.length + this.building.length;
  }

  registerBuffer(id: number, memory: Uint8Array): void {
    this.buffers.set(id, memory); // the view itself: segment offsets count from memory[0]
  }

  unregisterBuffer(id: number): void {
    if (!this.buffers.delete(id)) throw new Error(`buffer ${id} was not registered`);
  }

  begin(tag: number, op: BlockOp, offsetBytes: number, lengthBytes = 0, flags = 0): void {
    const r: RecordedRequest = { tag, op, offset: offsetBytes, length: lengthBytes, flags, segments: [] };
    this.building.push(r);
    this.log.push(r);
  }

  segment(bufferId: number, bufferOffset: number, length: number): void {
    const buf = this.buffers.get(bufferId);
    if (!buf) throw new RangeError(`segment names unregistered buffer ${bufferId}`);
    if (!(bufferOffset >= 0 && length > 0 && bufferOffset + length <= buf.length)) {
      throw new RangeError(`segment ${bufferOffset}+${length} outside buffer ${bufferId} of ${buf.length} bytes`);
    }
    const r = this.building[this.building.length - 1];
    if (!r) throw new Error('segment() before begin()');
    r.segments.push({ id: bufferId, offset: bufferOffset, length });
    if (r.op === BlockOp.Read || r.op === BlockOp.Write) r.length += length;
  }

  submit(): void {
    this.submits++;
    for (const r of this.building) {
      if (r.op !== BlockOp.Flush && r.offset + r.length > this.sizeBytes) {
        throw new RangeError(`request ${r.offset}+${r.length} past the end of the ${this.sizeBytes}-byte disk`);
      }
      if (r.offset % this.logicalBlockSize || r.length % this.logicalBlockSize) {
        throw new RangeError(`request ${r.offset}+${r.length} not aligned to ${this.logicalBlockSize}`);
      }
    }
    this.pending.push(...this.building);
    this.building = [];
    if (this.autoComplete) setImmediate(() => this.completeAll());
  }

  /** Does every submitted request and reports them in one completion batch. Returns how many. */
  completeAll(): number {
    return this.completeWhere(() => true);
  }

  /** Completes, in one batch, the submitted requests `pick` selects (out of order); the rest stay pending. */
  completeWhere(pick: (r: RecordedRequest) => boolean): number {
    const batch = this.pending.filter(pick);
    this.pending = this.pending.filter((r) => !pick(r));
    if (batch.length === 0) return 0;
    const tags = new Uint32Array(batch.length);
    const results = new Int32Array(batch.length);
    batch.forEach((r, i) => {
      tags[i] = r.tag;
      const forced = this.failOp.get(r.op);
      if (forced !== undefined) {
        this.failOp.delete(r.op);
        results[i] = forced;
        return;
      }
      let pos = r.offset;
      switch (r.op) {
        case BlockOp.Read:
          for (const s of r.segments) {
            this.buffers.get(s.id)!.set(this.disk.subarray(pos, pos + s.length), s.offset);
            pos += s.length;
          }
          break;
        case BlockOp.Write:
          for (const s of r.segments) {
            this.disk.set(this.buffers.get(s.id)!.subarray(s.offset, s.offset + s.length), pos);
            pos += s.length;
          }
          break;
        case BlockOp.Discard:
        case BlockOp.WriteZeroes:
          this.disk.fill(0, r.offset, r.offset + r.length);
          break;
        default:
          break;
      }
    });
    this.onComplete?.(tags, results, batch.length);
    if (this.inFlight === 0) for (const w of this.drainWaiters.splice(0)) w();
    return batch.length;
  }

  drain(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async close(): Promise<void> {
    await this.drain();
  }
}
