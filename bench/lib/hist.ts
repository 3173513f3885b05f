// Latency histogram: log buckets 1% wide from 1 µs up (constant memory however many samples),
// exact maximum. Percentiles are the upper bound of their bucket (within 1%).
const GROWTH = Math.log(1.01);
const BUCKETS = 2400; // 1.01^2400 µs ≈ 2.3e10 µs: far beyond any run

export class Histogram {
  readonly counts = new Float64Array(BUCKETS);
  n = 0;
  max = 0;

  /** record one latency in microseconds */
  add(us: number): void {
    if (us > this.max) this.max = us;
    const i = us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(us) / GROWTH));
    this.counts[i]++;
    this.n++;
  }

  merge(o: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i] += o.counts[i];
    this.n += o.n;
    if (o.max > this.max) this.max = o.max;
  }

  /** q in [0, 1]; microseconds (NaN when empty) */
  quantile(q: number): number {
    if (this.n === 0) return NaN;
    const want = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= want) return Math.min(this.max, Math.exp(i * GROWTH));
    }
    return this.max;
  }

  reset(): void {
    this.counts.fill(0);
    this.n = 0;
    this.max = 0;
  }
}
