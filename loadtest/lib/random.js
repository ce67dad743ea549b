// @ts-check
/**
 * Seeded randomness, so a scenario with a `seed` sends the same prompts in the same order on
 * every run (and a test can check the weights without depending on luck).
 *
 * The one copy for every runtime: the Node runner requires it, k6 imports it (k6 loads local
 * CommonJS files; this one and `prompts.js` need nothing but the language) and the benchmarks
 * import it through `bench/lib/random.mjs`. It stays CommonJS because ESM can import CommonJS
 * but the runner and jest cannot require ESM on Node 20.10. Plain ES2020, no Node API.
 */

/**
 * mulberry32: a small, fast 32-bit generator, good enough to pick prompts (not for secrets).
 * @param {number} seed any integer
 * @returns {() => number} uniform in [0, 1)
 */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Picks an index with probability weight / sum(weights).
 * @param {number[]} weights non-negative, at least one positive
 * @returns {(random: () => number) => number}
 */
function weightedPicker(weights) {
  const total = weights.reduce((sum, w) => sum + w, 0);
  if (!(total > 0) || weights.some((w) => !(w >= 0))) {
    throw new Error(`weights must be non-negative with a positive sum, got ${JSON.stringify(weights)}`);
  }
  /** @type {number[]} */
  const cumulative = [];
  let running = 0;
  for (const w of weights) cumulative.push((running += w) / total);
  return (random) => {
    const r = random();
    for (let i = 0; i < cumulative.length; i += 1) if (r < (cumulative[i] ?? 1)) return i;
    // r is below 1 and the last bound is 1 up to rounding: only rounding lands here.
    return cumulative.length - 1;
  };
}

/**
 * An integer in [min, max], uniformly.
 * @param {() => number} random
 * @param {number} min
 * @param {number} max
 */
function uniformInt(random, min, max) {
  return min + Math.floor(random() * (max - min + 1));
}

/**
 * An integer in [min, max] whose logarithm is uniform: short values are common and long ones
 * rare, the right-skewed shape real prompt lengths have (most requests are short, a few paste a
 * whole document).
 * @param {() => number} random
 * @param {number} min
 * @param {number} max
 */
function logUniformInt(random, min, max) {
  if (min <= 0) return uniformInt(random, min, max);
  const low = Math.log(min);
  const high = Math.log(max + 1);
  return Math.min(max, Math.floor(Math.exp(low + random() * (high - low))));
}

module.exports = { mulberry32, weightedPicker, uniformInt, logUniformInt };
