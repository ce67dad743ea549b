import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createPromptSource, vuRandom } from '../lib/prompts';
import { uniformInt } from '../lib/random';
import { loadScenario } from '../lib/scenario';
import { evaluateThresholds } from '../lib/thresholds';
import { summarize } from '../lib/stats';

/**
 * k6 draws its prompts with the runner's own lib/prompts.js and lib/random.js, but seeds them,
 * times the pauses and turns the scenario into options in k6/lib/scenario.js. This test runs that
 * file under Node (k6's modules replaced by stubs) and checks that it sends the same prompts,
 * think times and thresholds from the same scenario as the runner.
 */
const K6_LIB = pathToFileURL(join(__dirname, '..', 'k6', 'lib', 'scenario.js')).href;

/** Node loader hooks: k6/http and k6/metrics as stubs, and the k6 library loaded as ESM. */
const HOOKS = `
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const stub = (source) => 'data:text/javascript,' + encodeURIComponent(source);
const METRIC = 'class Metric { constructor(name) { this.name = name; } add() {} }';
const STUBS = {
  'k6/http': stub('export default { get() { throw new Error("no http in this test"); } };'),
  'k6/metrics': stub(METRIC + ' export class Trend extends Metric {} export class Rate extends Metric {}' +
    ' export class Counter extends Metric {} export class Gauge extends Metric {}'),
};
export async function resolve(specifier, context, next) {
  return STUBS[specifier] ? { url: STUBS[specifier], shortCircuit: true } : next(specifier, context);
}
export async function load(url, context, next) {
  if (url === ${JSON.stringify(K6_LIB)}) {
    return { format: 'module', shortCircuit: true, source: readFileSync(fileURLToPath(url), 'utf8') };
  }
  return next(url, context);
}`;

interface K6Answer {
  draws: Array<{ className: string; prompt: string; maxTokens: number; think: number }>;
  thresholds: Record<string, string[]>;
  options: { scenarios: Record<string, Record<string, unknown>>; thresholds: Record<string, string[]> };
  durations: number[];
}

/** Runs k6/lib/scenario.js in a child Node process and returns what it computed. */
function askK6Library(
  scenario: unknown,
  prompts: unknown,
  seed: number,
  vu: number,
  count: number,
): K6Answer {
  const script = `
import { register } from 'node:module';
register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(HOOKS)}`)});
const k6 = await import(${JSON.stringify(K6_LIB)});
const scenario = ${JSON.stringify(scenario)};
const user = k6.userDraws({ ...scenario, seed: ${seed} }, ${JSON.stringify(prompts)}, ${vu});
const draws = [];
for (let i = 0; i < ${count}; i += 1) {
  const { className, prompt, maxTokens } = user.nextRequest();
  draws.push({ className, prompt, maxTokens, think: user.thinkSeconds() });
}
process.stdout.write(JSON.stringify({
  draws,
  thresholds: k6.buildThresholds(scenario.thresholds),
  options: k6.buildOptions(scenario),
  durations: ['500ms', '30s', '1m30s', '1.5s', '2h'].map(k6.parseDuration),
}));`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (child.status !== 0) throw new Error(`the k6 library failed under Node:\n${child.stderr}`);
  return JSON.parse(child.stdout) as K6Answer;
}

describe('the k6 scripts and the Node runner, given the same scenario', () => {
  const scenario = loadScenario('seed-mix');
  const answer = askK6Library(scenario.raw, scenario.prompts, 11, 3, 60);

  it('send the same prompts with the same max_tokens, and think as long between them', () => {
    const random = vuRandom(11, 3);
    const next = createPromptSource(scenario.prompts, random);
    const { min, max } = scenario.thinkTimeMs;
    const runner = Array.from({ length: 60 }, () => {
      const { className, prompt, maxTokens } = next();
      return { className, prompt, maxTokens, think: uniformInt(random, min, max) / 1000 };
    });
    expect(answer.draws).toEqual(runner);
  });

  it('hold the same thresholds, on the metrics the runner reports in its k6 column', () => {
    const nothing = summarize([]);
    const runner: Record<string, string[]> = {};
    for (const t of evaluateThresholds(scenario.thresholds, {
      acceptMs: nothing,
      ttftMs: nothing,
      completionMs: nothing,
      errorRate: NaN,
    })) {
      const [metric, expression] = t.k6.split(': ') as [string, string];
      (runner[metric] ??= []).push(expression);
    }
    expect(answer.thresholds).toEqual(runner);
    expect(answer.options.thresholds).toEqual(runner);
  });

  it('ramp the same stages from 0 users, and read durations alike', () => {
    expect(answer.options.scenarios[scenario.name]).toMatchObject({
      executor: 'ramping-vus',
      startVUs: 0,
      stages: scenario.raw.stages,
      gracefulStop: '30s',
    });
    expect(answer.options.scenarios.queue_depth).toMatchObject({ exec: 'sampleQueue', duration: '162s' });
    expect(answer.durations).toEqual([500, 30_000, 90_000, 1500, 7_200_000]);
  });
});
