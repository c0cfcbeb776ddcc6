// Seeded random numbers for the load generator's random offsets and read/write mix: the same seed
// gives the same run.

/** xorshift32: a seeded, allocation-free random stream. */
export class Rng {
  constructor(private x: number) {
    if (this.x === 0) this.x = 0x9e3779b9;
  }

  next(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x;
    return x >>> 0;
  }

  /** Uniform integer in [0, n) for n up to 2^53. */
  below(n: number): number {
    return Math.floor((((this.next() >>> 5) * 67108864 + (this.next() >>> 6)) / 9007199254740992) * n);
  }
}
