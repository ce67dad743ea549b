// @ts-check
/**
 * Builds requests from a scenario's prompt classes. The k6 scripts import this very file
 * (`k6/lib/scenario.js`), so a seeded scenario sends the same prompts from either; it may
 * therefore use nothing but the language and `random.js` (k6 resolves only full file names).
 */
const { logUniformInt, mulberry32, uniformInt, weightedPicker } = require('./random.js');

/**
 * What the builder reads of a prompt class (`scenario.js` validates the whole of it). Written out
 * rather than taken from the zod schema so that k6, which type-checks this file, need not load zod.
 * @typedef {{ name: string, weight: number, templates: string[], fillers: string[],
 *             words: { min: number, max: number, distribution?: 'log-uniform' | 'uniform' },
 *             maxTokens: { min: number, max: number } }} PromptClass
 * @typedef {{ className: string, prompt: string, words: number, maxTokens: number }} PromptRequest
 */

/**
 * @param {PromptClass[]} classes
 * @param {() => number} random
 * @returns {() => PromptRequest}
 */
function createPromptSource(classes, random) {
  const pick = weightedPicker(classes.map((c) => c.weight));
  return () => {
    const c = /** @type {PromptClass} */ (classes[pick(random)]);
    const template = /** @type {string} */ (c.templates[Math.floor(random() * c.templates.length)]);
    const words =
      c.words.distribution === 'uniform'
        ? uniformInt(random, c.words.min, c.words.max)
        : logUniformInt(random, c.words.min, c.words.max);
    const text = fillText(random, c.fillers, words);
    return {
      className: c.name,
      prompt: template.replace('{text}', text),
      words,
      maxTokens: uniformInt(random, c.maxTokens.min, c.maxTokens.max),
    };
  };
}

/**
 * `count` words from fillers taken at random, cut at the count.
 * @param {() => number} random
 * @param {string[]} fillers
 * @param {number} count
 */
function fillText(random, fillers, count) {
  /** @type {string[]} */
  const words = [];
  while (words.length < count) {
    const filler = /** @type {string} */ (fillers[Math.floor(random() * fillers.length)]);
    words.push(...filler.split(/\s+/).filter(Boolean));
  }
  return words.slice(0, count).join(' ');
}

/**
 * The generator of one virtual user: derived from the scenario's seed (random when it has none)
 * and the user's number, so users do not send the same sequence.
 * @param {number | null} seed
 * @param {number} vu 1-based, as k6's __VU
 */
function vuRandom(seed, vu) {
  const base = seed ?? Math.floor(Math.random() * 2 ** 31);
  return mulberry32(Math.imul(base ^ 0x9e3779b9, 31) + vu);
}

module.exports = { createPromptSource, fillText, vuRandom };
