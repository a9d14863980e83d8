// Order statistics over a sample of wall times. Percentiles interpolate linearly between
// closest ranks (the R-7 / NumPy default), so p50 equals the usual median.

export interface Stats {
  readonly n: number;
  readonly median: number;
  readonly p90: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] ?? Number.NaN;
  const b = sorted[hi] ?? Number.NaN;
  return a + (b - a) * (pos - lo);
}

// Non-finite values (a metric that does not apply to a sample) are left out.
export function summarize(samples: readonly number[]): Stats {
  const s = samples.filter(Number.isFinite).sort((a, b) => a - b);
  return {
    n: s.length,
    median: percentile(s, 0.5),
    p90: percentile(s, 0.9),
    min: s[0] ?? Number.NaN,
    max: s[s.length - 1] ?? Number.NaN,
    mean: s.length === 0 ? Number.NaN : s.reduce((x, y) => x + y, 0) / s.length,
  };
}
