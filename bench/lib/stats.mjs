/**
 * Percentiles by the nearest-rank method: p99 of 200 samples is the 198th smallest, a value
 * that was actually observed (no interpolation between two samples).
 * @param {number[]} values
 * @param {number} p a fraction in (0, 1]
 */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return /** @type {number} */ (sorted[rank - 1]);
}

/** @param {number[]} values */
export function summarize(values) {
  const mean = values.length === 0 ? NaN : values.reduce((s, v) => s + v, 0) / values.length;
  return {
    count: values.length,
    p50: percentile(values, 0.5),
    p90: percentile(values, 0.9),
    p99: percentile(values, 0.99),
    max: values.length === 0 ? NaN : Math.max(...values),
    mean,
  };
}

/** llmq's figure divided by the reference's, or NaN when either is missing. */
export function ratio(value, reference) {
  return Number.isFinite(value) && Number.isFinite(reference) && reference !== 0 ? value / reference : NaN;
}

/** Rounds to `digits` decimals for the JSON file (full precision is noise at these sample sizes). */
export function round(value, digits = 3) {
  if (!Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
