// Request latencies as loadgen records them: one histogram, allocation-free per sample, read as
// percentiles, mean and max.

/** Latency histogram: 32 buckets per power of two of nanoseconds (about 2% resolution). */
export class LatencyHistogram {
  private readonly buckets = new Float64Array(64 * 32);
  count = 0;
  sum = 0;
  max = 0;

  add(ns: number): void {
    const v = ns < 1 ? 1 : ns;
    this.buckets[Math.min(this.buckets.length - 1, Math.floor(Math.log2(v) * 32))]++;
    this.count++;
    this.sum += v;
    if (v > this.max) this.max = v;
  }

  /** The q-quantile in nanoseconds (upper edge of its bucket). */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const target = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i];
      if (seen >= target) return Math.min(this.max, 2 ** ((i + 1) / 32));
    }
    return this.max;
  }
}
