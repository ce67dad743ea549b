#!/usr/bin/env node
// @ts-check
// `npm run loadtest -- <scenario> [--url <api> --key <key>] [--out <dir>]`: runs a scenario file
// (the same one k6 runs, see k6/) with this Node runner and writes a report; see README.md.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startLocalStack } from './lib/local-stack.mjs';
import { runScenario } from './lib/runner.mjs';

const require = createRequire(import.meta.url);
/** @type {typeof import('./lib/scenario.js')} */
const { ScenarioError, corpusJsonSchema, loadScenario, scenarioJsonSchema } = require('./lib/scenario');
/** @type {typeof import('./lib/thresholds.js')} */
const { evaluateThresholds } = require('./lib/thresholds');
/** @type {typeof import('./lib/report.js')} */
const { writeReport } = require('./lib/report');

const HERE = dirname(fileURLToPath(import.meta.url));
/** k6 exits 99 when a threshold fails; so does this runner, so CI treats both alike. */
const EXIT_THRESHOLDS = 99;

const USAGE = `usage: npm run loadtest -- <scenario> [--url <api> --key <key>] [--out <dir>] [--check]
  <scenario>       a name in loadtest/scenarios (smoke, seed-mix, sse, openai) or a path to a .json file
  --url <api>      run against this API (default: LLMQ_URL; neither: start a local stack)
  --key <key>      its API key (default: LLMQ_API_KEY)
  --out <dir>      where to write the report (default: loadtest/reports/<timestamp>-<scenario>)
  --check          validate the scenario and show what would run (and its k6 thresholds), then stop
  --write-schemas  regenerate loadtest/schema/*.schema.json from lib/scenario.js
exit code: 0 every threshold met, ${EXIT_THRESHOLDS} a threshold failed, 1 the run could not be done, 2 bad usage or scenario`;

const log = (/** @type {string} */ message) => process.stderr.write(`[loadtest] ${message}\n`);

function parseCli() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      key: { type: 'string' },
      out: { type: 'string' },
      check: { type: 'boolean', default: false },
      'write-schemas': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const url = values.url ?? process.env.LLMQ_URL;
  const key = values.key ?? process.env.LLMQ_API_KEY;
  if (!values.help && !values['write-schemas'] && positionals.length !== 1)
    throw new Error('name one scenario');
  if (url && !key) throw new Error('--url needs --key (or LLMQ_API_KEY)');
  return { ...values, scenario: positionals[0] ?? '', url: url?.replace(/\/+$/, ''), key };
}

function writeSchemas() {
  const dir = join(HERE, 'schema');
  mkdirSync(dir, { recursive: true });
  /** @type {[string, object][]} */
  const schemas = [
    ['scenario.schema.json', scenarioJsonSchema()],
    ['corpus.schema.json', corpusJsonSchema()],
  ];
  for (const [file, schema] of schemas) {
    writeFileSync(join(dir, file), `${JSON.stringify(schema, null, 2)}\n`);
    log(`wrote ${relative(process.cwd(), join(dir, file))}`);
  }
}

/**
 * ISO 8601 basic (20250101T120000Z): sorts by time, no ':' for other filesystems (as bench/).
 * @param {Date} date
 */
function isoBasic(date) {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

async function main() {
  let args;
  try {
    args = parseCli();
  } catch (error) {
    console.error(`${/** @type {Error} */ (error).message}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  if (args['write-schemas']) {
    writeSchemas();
    return 0;
  }

  let scenario;
  try {
    scenario = loadScenario(args.scenario);
  } catch (error) {
    if (!(error instanceof ScenarioError)) throw error;
    console.error(error.message);
    return 2;
  }
  if (args.check) {
    console.log(describeScenario(scenario));
    return 0;
  }

  const controller = new AbortController();
  /** @type {Awaited<ReturnType<typeof startLocalStack>> | null} */
  let local = null;
  for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
    process.on(signal, () => {
      if (controller.signal.aborted) {
        log(`${signal} again: stopping now`);
        void (local?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
        return;
      }
      log(`${signal}: ending the run early (again to stop at once)`);
      controller.abort();
    });
  }

  const startedAt = new Date();
  try {
    if (!args.url) local = await startLocalStack(scenario.local, log);
    const url = local?.url ?? /** @type {string} */ (args.url);
    const key = local?.key ?? /** @type {string} */ (args.key);
    /** @type {import('./lib/report.js').Target} */
    const target = local?.target ?? { kind: 'remote', url };
    log(
      `${scenario.name}: ${scenario.transport.kind} against ${url}, ${scenario.stages.length} stages over ` +
        `${scenario.totalMs / 1000} s, up to ${scenario.maxVus} virtual users`,
    );
    const run = await runScenario({
      scenario,
      url,
      key,
      signal: controller.signal,
      progress: (line) => process.stderr.write(`${line}\n`),
    });
    const totals = run.recorder.totals();
    const thresholds = evaluateThresholds(scenario.thresholds, totals);
    const out =
      args.out ??
      join(HERE, 'reports', `${isoBasic(startedAt)}-${scenario.name}-${randomBytes(2).toString('hex')}`);
    writeReport(out, { scenario, target, recorder: run.recorder, thresholds, startedAt, runMs: run.runMs });
    if (totals.failed > 0 && local) log(`service logs: ${JSON.stringify(local.logTail())}`);

    const passed = thresholds.every((t) => t.ok);
    console.log(
      `${scenario.name}: ${totals.completed} completed, ${totals.failed} failed, ${totals.interrupted} interrupted` +
        `${run.aborted ? ' (ended early)' : ''}`,
    );
    for (const t of thresholds) console.log(`  ${t.ok ? 'pass' : 'FAIL'}  ${t.k6}  (measured ${format(t)})`);
    const shown = relative(process.cwd(), out);
    const report = join(shown.startsWith('..') ? out : shown, 'report.md');
    console.log(`thresholds ${passed ? 'met' : 'FAILED'}; report: ${report}`);
    if (run.aborted) return 130;
    return passed ? 0 : EXIT_THRESHOLDS;
  } finally {
    await local?.stop();
  }
}

/**
 * What `--check` shows: the scenario as it will run, and its thresholds in k6's syntax.
 * @param {import('./lib/scenario.js').Scenario} s
 */
function describeScenario(s) {
  const mix = s.prompts.map((p) => `${p.name} ${p.weight}`).join(', ');
  const k6 = evaluateThresholds(s.thresholds, {
    acceptMs: NO_SAMPLES,
    ttftMs: NO_SAMPLES,
    completionMs: NO_SAMPLES,
    errorRate: NaN,
  }).map((t) => `  ${t.k6}`);
  return [
    `${s.name}: valid (${s.file})`,
    `  transport ${s.transport.kind}, stages ${s.stages.map((st) => `${st.duration}→${st.target}`).join(' ')} (${s.totalMs / 1000} s, up to ${s.maxVus} VUs)`,
    `  prompts ${mix}`,
    'thresholds:',
    ...k6,
  ].join('\n');
}

const NO_SAMPLES = {
  count: 0,
  min: NaN,
  avg: NaN,
  med: NaN,
  max: NaN,
  p50: NaN,
  p90: NaN,
  p95: NaN,
  p99: NaN,
};

/** @param {import('./lib/thresholds.js').ThresholdResult} t */
function format(t) {
  if (!Number.isFinite(t.value)) return 'no samples';
  return t.metric === 'errorRate' ? `${(t.value * 100).toFixed(2)} %` : `${t.value.toFixed(1)} ms`;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
