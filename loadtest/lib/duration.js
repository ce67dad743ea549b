// @ts-check
/**
 * Durations as k6 writes them ("30s", "1m30s", "500ms", "1.5s", "2h"): the scenario files are
 * read by k6 and by this runner, so both must agree on what a duration means.
 */

const PATTERN = /^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
/** @type {Record<string, number>} */
const UNIT_MS = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/**
 * True when `text` is a duration k6 accepts in `stages` and this runner understands.
 * @param {unknown} text
 * @returns {text is string}
 */
function isDuration(text) {
  return typeof text === 'string' && PATTERN.test(text);
}

/**
 * Milliseconds of a duration string; throws on anything else.
 * @param {string} text
 * @returns {number}
 */
function parseDuration(text) {
  if (!isDuration(text))
    throw new Error(`not a duration: ${JSON.stringify(text)} (use e.g. "30s", "1m30s", "500ms")`);
  let ms = 0;
  for (const match of text.matchAll(PART)) ms += Number(match[1]) * (UNIT_MS[match[2] ?? ''] ?? 0);
  return ms;
}

/**
 * A short human form: 950 ms, 12.5 s, 2 min 5 s.
 * @param {number} ms
 */
function formatDuration(ms) {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  return seconds === 0 ? `${minutes} min` : `${minutes} min ${seconds} s`;
}

module.exports = { isDuration, parseDuration, formatDuration };
