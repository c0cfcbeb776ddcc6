// Shared by the engine/backend native tests: a deterministic PRNG, patterned data, and a
// completion tracker over BlockBackend's zero-copy batch API.
import { BlockBackend } from '../../electron/dataplane/block/backend.js';
import { BlockOp } from '../../electron/dataplane/block/types.js';
import { within } from '../lib/wait.js';

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 7;
  for (let i = 0; i < length; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b.writeUInt32LE(x, i <= length - 4 ? i : length - 4);
  }
  return b;
}

/** Resolves each tag's result; every completion must arrive exactly once. */
export class Completions {
  private readonly waiters = new Map<number, (r: number) => void>();
  readonly seen = new Map<number, number>();
  duplicates = 0;
  unknown = 0;

  constructor(backend: BlockBackend) {
    backend.onComplete = (tags, results, count) => {
      for (let i = 0; i < count; i++) {
        const tag = tags[i]!;
        if (this.seen.has(tag)) this.duplicates++;
        this.seen.set(tag, results[i]!);
        const w = this.waiters.get(tag);
        if (w) { this.waiters.delete(tag); w(results[i]!); } else this.unknown++;
      }
    };
  }

  /** The result of `tag`, or a failure naming it if it does not complete within `timeoutMs`. */
  expect(tag: number, timeoutMs = 60_000): Promise<number> {
    const done = this.seen.get(tag);
    if (done !== undefined) return Promise.resolve(done);
    return within(
      new Promise<number>((resolve) => this.waiters.set(tag, resolve)),
      { timeoutMs, what: `the completion of tag ${tag}`, detail: () => `${this.seen.size} completions seen so far` },
    );
  }
}

/** Splits `length` bytes at `bufferOffset` into 1..4 segments of uneven (unaligned) sizes. */
export function segments(random: () => number, bufferOffset: number, length: number): Array<[number, number]> {
  const n = 1 + Math.floor(random() * 4);
  const out: Array<[number, number]> = [];
  let off = bufferOffset, left = length;
  for (let i = 0; i < n - 1 && left > 1; i++) {
    const len = 1 + Math.floor(random() * (left - 1));
    out.push([off, len]);
    off += len;
    left -= len;
  }
  out.push([off, left]);
  return out;
}

export const OPS = BlockOp;
