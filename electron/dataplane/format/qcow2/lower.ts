// A format driver's requests to the device below it (the image file's BlockBackend, or a backing
// image): tags of its own, one callback per request, and a promise read/write for metadata over the
// same batch path and engine (never a synchronous fs call on the IOThread).
import { SpindleError } from '../../../shared/errors.js';
import { BlockOp, type BlockDevice } from '../../block/types.js';
import { ioError } from '../../block/open.js';

/** Tags this module gives the device below: above any virtio tag ((queue << 16) | slot), below
 *  BlockBackend's own; TAG_BASE + the request's slot here. */
const TAG_BASE = 0x1000_0000;
/** Buffer ids of temporary (metadata, copy-on-write) buffers: above guest regions, below BlockBackend's own. */
const BUFFER_BASE = 0xe000_0000;
const BUFFER_LIMIT = 0xefff_0000;

/** Called once per request with its result and the `arg` given to begin(). */
export type Done = (result: number, arg?: unknown) => void;

/** One counter for the whole thread: a buffer registered through a backing chain reaches every
 *  device below, so two Lowers must never hand out the same id. */
let nextBuffer = BUFFER_BASE;

export class Lower {
  // In-flight requests by slot (tag - TAG_BASE), free slots on a stack: no Map whose storage V8
  // would grow and shrink on every guest request.
  private readonly dones: (Done | null)[] = [];
  private readonly args: unknown[] = [];
  private readonly free: number[] = [];
  private dirty = false;

  constructor(
    readonly dev: BlockDevice,
    private readonly name: string,
  ) {
    dev.onComplete = (tags, results, count) => {
      for (let i = 0; i < count; i++) {
        const slot = tags[i]! - TAG_BASE;
        const cb = this.dones[slot];
        if (!cb) continue;
        const arg = this.args[slot];
        this.dones[slot] = null;
        this.args[slot] = undefined;
        this.free.push(slot);
        cb(results[i]!, arg);
      }
      this.afterCompletions?.();
    };
  }

  /** Called after every completion batch of the device below (the driver delivers its own then). */
  afterCompletions: (() => void) | null = null;

  get pending(): number {
    return this.dones.length - this.free.length;
  }

  /** Begins a request; add segments with segment(), then submit() (or let the batch's end do it).
   *  `done(result, arg)`: a shared function and an argument spare the hot path a closure. */
  begin(op: BlockOp, offset: number, length: number, flags: number, done: Done, arg?: unknown): void {
    const slot = this.free.pop() ?? this.dones.length;
    this.dones[slot] = done;
    this.args[slot] = arg;
    this.dev.begin(TAG_BASE + slot, op, offset, length, flags);
    this.dirty = true;
  }

  segment(bufferId: number, offset: number, length: number): void {
    this.dev.segment(bufferId, offset, length);
  }

  submit(): void {
    if (!this.dirty) return;
    this.dirty = false;
    this.dev.submit();
  }

  /** One request with a temporary buffer of its own, as a promise; submitted at once. */
  run(op: BlockOp, offset: number, length: number, data: Uint8Array | null, flags = 0): Promise<void> {
    return new Promise((resolve, reject) => {
      let id = -1;
      if (data && data.length) {
        id = nextBuffer;
        nextBuffer = id + 1 >= BUFFER_LIMIT ? BUFFER_BASE : id + 1;
        this.dev.registerBuffer(id, data);
      }
      this.begin(op, offset, length, flags, (res) => {
        if (id >= 0) this.dev.unregisterBuffer(id);
        if (res < 0) reject(ioError(res, `${this.name}: ${opName(op)} of ${length} bytes at ${offset}`));
        else resolve();
      });
      if (id >= 0) this.segment(id, 0, data!.length);
      this.submit();
    });
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    if (length) await this.run(BlockOp.Read, offset, length, buf);
    return buf;
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.run(BlockOp.Write, offset, data.length, data);
  }

  flush(): Promise<void> {
    return this.run(BlockOp.Flush, 0, 0, null);
  }

  writeZeroes(offset: number, length: number, flags = 0): Promise<void> {
    return this.run(BlockOp.WriteZeroes, offset, length, null, flags);
  }

  discard(offset: number, length: number): Promise<void> {
    return this.run(BlockOp.Discard, offset, length, null);
  }
}

function opName(op: BlockOp): string {
  return ['read', 'write', 'flush', 'discard', 'write-zeroes'][op] ?? `op ${op}`;
}

/** A request failed inside the driver: the -errno the guest gets (EIO for a damaged image). */
export function errnoOfError(err: unknown): number {
  if (err instanceof SpindleError) {
    if (err.code === 'NO_SPACE') return -28;
    if (err.code === 'READ_ONLY') return -30;
  }
  return -5;
}
