/**
 * Percentiles by the nearest-rank method: p99 of 200 samples is the 198th smallest, a value
 * that was actually observed (no interpolation between two samples).
 * @param {number[]} sorted ascending
 * @param {number} p a fraction in (0, 1]
 */
function nearestRank(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return /** @type {number} */ (sorted[rank - 1]);
}

/** @param {number[]} values */
export function percentile(values, p) {
  return nearestRank(Float64Array.from(values).sort(), p);
}

/**
 * Count, p50, p90, p99, max and mean. A typed-array sort, and no `Math.max(...values)`: a
 * 10 s hello run records well over 100k latencies, more than a call's arguments may hold.
 * @param {number[]} values
 */
export function summarize(values) {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    p50: nearestRank(sorted, 0.5),
    p90: nearestRank(sorted, 0.9),
    p99: nearestRank(sorted, 0.99),
    max: sorted.length === 0 ? NaN : /** @type {number} */ (sorted[sorted.length - 1]),
    mean: sorted.length === 0 ? NaN : sum / sorted.length,
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
