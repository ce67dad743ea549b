// @ts-check
/**
 * Scenario files (`loadtest/scenarios/*.json`): what a load test sends, how fast it ramps and
 * what it must achieve. k6 (`loadtest/k6/*.js`) and this runner read the very same files.
 *
 * Unknown fields are errors, so a typo such as `"p955"` or `"pollIntervall"` fails loudly with
 * the field named instead of being ignored. `scenarios/scenario.schema.json` is generated from
 * this schema for editors (`node loadtest/run.mjs --print-schema`).
 */
const { readFileSync } = require('node:fs');
const { basename, dirname, isAbsolute, join, resolve } = require('node:path');
const { z } = require('zod');
const { isDuration, parseDuration } = require('./duration');

const SCENARIOS_DIR = join(__dirname, '..', 'scenarios');

const duration = z
  .string()
  .refine(isDuration, { message: 'must be a duration such as "30s", "1m30s" or "500ms"' });

/**
 * The fields of an integer range {min, max}.
 * @param {number} min the lowest value either may take
 */
const rangeFields = (min) => ({ min: z.number().int().min(min), max: z.number().int().min(min) });
/** @param {{ min: number, max: number }} r */
const ordered = (r) => r.min <= r.max;
const ORDERED = { message: 'must not be below min', path: ['max'] };

/** Statistics a latency threshold may bound; each must stay strictly below its value, in ms. */
const latencyThreshold = z
  .strictObject({
    avg: z.number().positive().optional(),
    min: z.number().positive().optional(),
    med: z.number().positive().optional(),
    max: z.number().positive().optional(),
    p50: z.number().positive().optional(),
    p90: z.number().positive().optional(),
    p95: z.number().positive().optional(),
    p99: z.number().positive().optional(),
  })
  .refine((t) => Object.keys(t).length > 0, { message: 'name at least one statistic, e.g. {"p95": 1000}' });

const promptClass = z.strictObject({
  name: z.string().regex(/^[a-z0-9_-]+$/, 'class names use a-z, 0-9, _ and -'),
  weight: z.number().positive().describe('Relative share of requests (the weights need not sum to 100)'),
  templates: z
    .array(z.string().includes('{text}', { message: 'a template must contain {text}' }))
    .min(1)
    .describe('Prompt templates; {text} is replaced by filler text of the sampled length'),
  fillers: z.array(z.string().min(1)).min(1).describe('Sentences the filler text is drawn from'),
  words: z
    .strictObject({ ...rangeFields(0), distribution: z.enum(['log-uniform', 'uniform']).optional() })
    .refine(ordered, ORDERED)
    .describe('Length of the filler text in words; log-uniform (the default) makes short ones common'),
  maxTokens: z
    .strictObject(rangeFields(1))
    .refine(ordered, ORDERED)
    .describe('max_tokens of each request, uniform in [min, max]'),
});

const prompts = z.array(promptClass).min(1);

const transport = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('poll'),
    pollInterval: duration.optional().describe('Wait between two GET pollUrl (default 500ms)'),
  }),
  z.strictObject({ kind: z.literal('sse') }),
  z.strictObject({ kind: z.literal('openai') }),
]);

const scenarioSchema = z
  .strictObject({
    $schema: z.string().optional(),
    name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'names use letters, digits, _ and - (k6 scenario names)'),
    description: z.string().optional(),
    seed: z
      .number()
      .int()
      .optional()
      .describe('Seed of the prompt picker: the same prompts in the same order'),
    model: z.string().min(1).optional().describe('Model to ask for; required by the openai transport'),
    cache: z
      .enum(['bypass', 'use'])
      .optional()
      .describe('bypass (default): Cache-Control: no-cache, no-store on every request, so each one runs'),
    transport: transport.describe(
      'poll: POST /api/generate then GET pollUrl; sse: POST then read streamUrl; openai: POST /v1/chat/completions, stream: true',
    ),
    stages: z
      .array(z.strictObject({ duration, target: z.number().int().min(0) }))
      .min(1)
      .describe('Virtual users ramp linearly to each target over its duration (k6 ramping-vus, from 0)'),
    gracefulStop: duration
      .optional()
      .describe('After the last stage, how long running iterations may finish (30s)'),
    thinkTime: z
      .strictObject({ min: duration, max: duration })
      .optional()
      .describe('A virtual user pauses this long (uniform) after each request'),
    requestTimeout: duration
      .optional()
      .describe('An iteration not finished after this long is an error (60s)'),
    corpus: z.string().min(1).optional().describe('A corpus file (its prompts), relative to this file'),
    prompts: prompts.optional().describe('The prompt classes inline (instead of corpus)'),
    thresholds: z.strictObject({
      acceptMs: latencyThreshold.optional().describe('Submit to 202 (poll and sse)'),
      ttftMs: latencyThreshold.optional().describe('Submit to the first token (sse and openai)'),
      completionMs: latencyThreshold.optional().describe('Submit to the complete answer'),
      errorRate: z
        .number()
        .positive()
        .max(1)
        .optional()
        .describe('Failed iterations / finished ones, must stay below (above 0: rate<0 could never pass)'),
    }),
    local: z
      .strictObject({
        workers: z.number().int().min(0).optional(),
        workerConcurrency: z.number().int().min(1).optional(),
        simulator: z
          .strictObject({
            ttftMs: z.number().int().min(0),
            tokenMs: z.number().int().min(0),
            jitter: z.number().min(0).max(1),
          })
          .optional(),
      })
      .optional()
      .describe('The stack the Node runner starts when no --url is given (ignored by k6)'),
  })
  // Zod runs this even when a field above failed: every rule reads defensively.
  .superRefine((s, ctx) => {
    const issue = (/** @type {PropertyKey[]} */ path, /** @type {string} */ message) =>
      ctx.addIssue({ code: 'custom', path, message });
    if ((s.corpus === undefined) === (s.prompts === undefined)) {
      issue(['corpus'], 'give either corpus (a file) or prompts (inline), exactly one');
    }
    const stages = Array.isArray(s.stages) ? s.stages : [];
    if (stages.length > 0 && !stages.some((stage) => stage?.target > 0)) {
      issue(['stages'], 'at least one stage needs a target above 0');
    }
    if (stages.length > 0 && stages.every((stage) => msOrNaN(stage?.duration) === 0)) {
      issue(['stages'], 'the stages last 0 s');
    }
    const kind = s.transport?.kind;
    if (s.thresholds?.ttftMs && kind === 'poll') {
      issue(['thresholds', 'ttftMs'], 'polling cannot see the first token: use the sse or openai transport');
    }
    if (s.thresholds?.acceptMs && kind === 'openai') {
      issue(['thresholds', 'acceptMs'], 'the OpenAI facade streams the answer, there is no 202 to time');
    }
    if (kind === 'openai' && s.model === undefined) issue(['model'], 'the openai transport needs a model');
    if (s.thinkTime && msOrNaN(s.thinkTime.min) > msOrNaN(s.thinkTime.max)) {
      issue(['thinkTime', 'max'], 'thinkTime: min must not exceed max');
    }
    if (Array.isArray(s.prompts)) checkClassNames(s.prompts, ['prompts'], ctx);
  });

/** @param {unknown} text */
function msOrNaN(text) {
  return typeof text === 'string' && isDuration(text) ? parseDuration(text) : NaN;
}

const corpusFileSchema = z
  .strictObject({ $schema: z.string().optional(), description: z.string().optional(), prompts })
  .superRefine((c, ctx) => {
    if (Array.isArray(c.prompts)) checkClassNames(c.prompts, ['prompts'], ctx);
  });

/**
 * @param {{ name?: unknown }[]} classes
 * @param {PropertyKey[]} path
 * @param {import('zod').RefinementCtx} ctx
 */
function checkClassNames(classes, path, ctx) {
  const seen = new Set();
  classes.forEach((c, i) => {
    if (typeof c?.name !== 'string') return;
    if (seen.has(c.name))
      ctx.addIssue({ code: 'custom', path: [...path, i, 'name'], message: `duplicate class "${c.name}"` });
    seen.add(c.name);
  });
}

/** A scenario file that cannot be used; `issues` name each offending field. */
class ScenarioError extends Error {
  /**
   * @param {string} file
   * @param {string[]} issues
   */
  constructor(file, issues) {
    super(`${file}: invalid scenario\n${issues.map((i) => `  - ${i}`).join('\n')}`);
    this.name = 'ScenarioError';
    this.file = file;
    this.issues = issues;
  }
}

/**
 * Zod issues as "field.path: message", the unknown fields themselves named.
 * @param {import('zod').core.$ZodIssue[]} issues
 */
function describeIssues(issues) {
  return issues.flatMap((issue) => {
    const at = formatPath(issue.path);
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => `${formatPath([...issue.path, key])}: unknown field`);
    }
    return [`${at || '(file)'}: ${issue.message}`];
  });
}

/**
 * `["prompts", 0, "words"]` as `prompts[0].words`.
 * @param {PropertyKey[]} path
 */
function formatPath(path) {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

/**
 * A scenario by name (`smoke` is `scenarios/smoke.json`) or by path.
 * @param {string} ref
 */
function scenarioPath(ref) {
  if (/[\\/]/.test(ref) || ref.endsWith('.json')) return resolve(ref);
  return join(SCENARIOS_DIR, `${ref}.json`);
}

/** @param {string} file */
function readJson(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ScenarioError(file, [`cannot read the file: ${/** @type {Error} */ (error).message}`]);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ScenarioError(file, [`not valid JSON: ${/** @type {Error} */ (error).message}`]);
  }
}

/**
 * Validates a parsed scenario; throws a {@link ScenarioError} naming every bad field.
 * @param {unknown} value
 * @param {string} [file] for messages
 * @returns {z.infer<typeof scenarioSchema>}
 */
function validateScenario(value, file = '(scenario)') {
  const parsed = scenarioSchema.safeParse(value);
  if (!parsed.success) throw new ScenarioError(file, describeIssues(parsed.error.issues));
  return parsed.data;
}

/**
 * @param {unknown} value
 * @param {string} [file]
 */
function validateCorpus(value, file = '(corpus)') {
  const parsed = corpusFileSchema.safeParse(value);
  if (!parsed.success) throw new ScenarioError(file, describeIssues(parsed.error.issues));
  return parsed.data;
}

/**
 * @typedef {z.infer<typeof promptClass>} PromptClass
 * @typedef {ReturnType<typeof resolveScenario>} Scenario
 */

/**
 * Loads, validates and resolves a scenario: its corpus read, durations in milliseconds and the
 * defaults filled in.
 * @param {string} ref a name in loadtest/scenarios or a path
 */
function loadScenario(ref) {
  const file = scenarioPath(ref);
  const raw = validateScenario(readJson(file), basename(file));
  let classes = raw.prompts;
  let corpusFile = null;
  if (raw.corpus !== undefined) {
    corpusFile = isAbsolute(raw.corpus) ? raw.corpus : join(dirname(file), raw.corpus);
    classes = validateCorpus(readJson(corpusFile), raw.corpus).prompts;
  }
  return resolveScenario(raw, /** @type {PromptClass[]} */ (classes), { file, corpusFile });
}

/**
 * @param {z.infer<typeof scenarioSchema>} raw
 * @param {PromptClass[]} prompts
 * @param {{ file: string, corpusFile: string | null }} where
 */
function resolveScenario(raw, prompts, where) {
  const stages = raw.stages.map((s) => ({ ...s, durationMs: parseDuration(s.duration) }));
  const transportKind = raw.transport.kind;
  return {
    ...where,
    raw,
    name: raw.name,
    description: raw.description ?? '',
    seed: raw.seed ?? null,
    model: raw.model ?? null,
    cache: raw.cache ?? 'bypass',
    transport: {
      kind: transportKind,
      pollIntervalMs:
        raw.transport.kind === 'poll' ? parseDuration(raw.transport.pollInterval ?? '500ms') : null,
    },
    stages,
    totalMs: stages.reduce((sum, s) => sum + s.durationMs, 0),
    maxVus: Math.max(...stages.map((s) => s.target)),
    gracefulStopMs: parseDuration(raw.gracefulStop ?? '30s'),
    thinkTimeMs: {
      min: raw.thinkTime ? parseDuration(raw.thinkTime.min) : 0,
      max: raw.thinkTime ? parseDuration(raw.thinkTime.max) : 0,
    },
    requestTimeoutMs: parseDuration(raw.requestTimeout ?? '60s'),
    prompts,
    thresholds: raw.thresholds,
    local: {
      workers: raw.local?.workers ?? 1,
      workerConcurrency: raw.local?.workerConcurrency ?? 32,
      simulator: raw.local?.simulator ?? { ttftMs: 300, tokenMs: 15, jitter: 0.2 },
    },
  };
}

/** The JSON Schema of scenario files, for editors (`$schema` in a scenario file). */
function scenarioJsonSchema() {
  return z.toJSONSchema(scenarioSchema, { io: 'input', unrepresentable: 'any' });
}

/** The JSON Schema of corpus files. */
function corpusJsonSchema() {
  return z.toJSONSchema(corpusFileSchema, { io: 'input', unrepresentable: 'any' });
}

module.exports = {
  SCENARIOS_DIR,
  ScenarioError,
  loadScenario,
  scenarioPath,
  validateScenario,
  validateCorpus,
  scenarioJsonSchema,
  corpusJsonSchema,
};
