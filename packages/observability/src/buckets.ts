/**
 * Histogram buckets, in seconds. LLM work spans four orders of magnitude: a cached answer in a
 * few milliseconds, a first token in a fraction of a second, a long generation in minutes.
 */
export const LLM_LATENCY_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600,
] as const;

/** HTTP answers of the API: submissions take milliseconds; SSE streams last as long as their job. */
export const HTTP_LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
] as const;
