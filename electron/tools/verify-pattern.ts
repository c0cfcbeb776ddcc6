// loadgen's --verify pattern: every block's bytes follow from the seed and its byte offset alone,
// so a write pass fills them and a later read (even in another run) checks each block by itself.

/** The verify pattern of a block: a function of seed and byte offset only, so a read can be checked alone. */
export function fillPattern(words: Uint32Array, start: number, count: number, seed: number, offset: number): void {
  let x = (seed ^ Math.imul((offset / 512) >>> 0, 0x9e3779b1) ^ Math.floor(offset / 2 ** 41)) >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[start + i] = x;
  }
}

export function checkPattern(words: Uint32Array, start: number, count: number, seed: number, offset: number): boolean {
  let x = (seed ^ Math.imul((offset / 512) >>> 0, 0x9e3779b1) ^ Math.floor(offset / 2 ** 41)) >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    if (words[start + i] !== x >>> 0) return false;
  }
  return true;
}
