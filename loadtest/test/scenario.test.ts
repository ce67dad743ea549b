import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDuration, parseDuration } from '../lib/duration';
import {
  SCENARIOS_DIR,
  ScenarioError,
  corpusJsonSchema,
  loadScenario,
  scenarioJsonSchema,
  validateScenario,
} from '../lib/scenario';

const CORPUS = join(SCENARIOS_DIR, 'corpora', 'seed-mix.json');
const dir = mkdtempSync(join(tmpdir(), 'llmq-loadtest-scenario-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A small valid scenario; each test breaks one thing. */
function valid(): Record<string, unknown> {
  return {
    name: 'unit',
    transport: { kind: 'sse' },
    corpus: CORPUS,
    stages: [{ duration: '10s', target: 2 }],
    thresholds: { acceptMs: { p99: 1000 }, ttftMs: { p95: 2000 }, errorRate: 0.05 },
  };
}

/** The issues a scenario is rejected with (fails the test if it is accepted). */
function issuesOf(scenario: unknown): string[] {
  try {
    validateScenario(scenario, 'unit.json');
  } catch (error) {
    if (error instanceof ScenarioError) return error.issues;
    throw error;
  }
  throw new Error('the scenario was accepted');
}

describe('scenario files', () => {
  const files = readdirSync(SCENARIOS_DIR).filter((f) => f.endsWith('.json'));

  it('ship smoke, seed-mix, sse and openai, each valid with its corpus', () => {
    expect(files).toEqual(expect.arrayContaining(['smoke.json', 'seed-mix.json', 'sse.json', 'openai.json']));
    for (const file of files) {
      const scenario = loadScenario(file.replace(/\.json$/, ''));
      expect(scenario.prompts.length).toBeGreaterThan(0);
      expect(scenario.totalMs).toBeGreaterThan(0);
    }
  });

  it('carry the seed mix: 40 % summaries, 30 % product descriptions, 20 % sentiment, 10 % technical', () => {
    const weights = Object.fromEntries(loadScenario('seed-mix').prompts.map((p) => [p.name, p.weight]));
    expect(weights).toEqual({ summary: 40, product_description: 30, sentiment: 20, technical: 10 });
  });

  it('resolve names, durations and defaults', () => {
    const s = loadScenario('seed-mix');
    expect(s.file).toBe(join(SCENARIOS_DIR, 'seed-mix.json'));
    expect(s.transport).toEqual({ kind: 'poll', pollIntervalMs: 500 });
    expect(s.stages.map((st) => st.durationMs)).toEqual([12_000, 30_000, 60_000, 30_000, 30_000]);
    expect(s.totalMs).toBe(162_000);
    expect(s.maxVus).toBe(20);
    expect(s.cache).toBe('bypass');
    expect(s.requestTimeoutMs).toBe(60_000);
  });

  it('match the JSON Schemas editors validate them with (regenerate with run.mjs --write-schemas)', () => {
    const schemaDir = join(SCENARIOS_DIR, '..', 'schema');
    expect(JSON.parse(readFileSync(join(schemaDir, 'scenario.schema.json'), 'utf8'))).toEqual(
      scenarioJsonSchema(),
    );
    expect(JSON.parse(readFileSync(join(schemaDir, 'corpus.schema.json'), 'utf8'))).toEqual(
      corpusJsonSchema(),
    );
  });
});

describe('a scenario with a mistake is rejected, the field named', () => {
  it('accepts the valid base scenario', () => {
    expect(validateScenario(valid()).name).toBe('unit');
  });

  it.each<[string, Record<string, unknown>, string]>([
    [
      'a misspelt field',
      { transport: { kind: 'poll', pollIntervall: '1s' }, thresholds: { errorRate: 0.05 } },
      'transport.pollIntervall: unknown field',
    ],
    [
      'a misspelt threshold statistic',
      { thresholds: { acceptMs: { p955: 10 } } },
      'thresholds.acceptMs.p955: unknown field',
    ],
    [
      'a bad duration',
      { stages: [{ duration: '10 seconds', target: 1 }] },
      'stages[0].duration: must be a duration',
    ],
    ['a negative target', { stages: [{ duration: '10s', target: -1 }] }, 'stages[0].target:'],
    ['an unknown transport', { transport: { kind: 'websocket' } }, 'transport.kind:'],
    ['an error rate of 0, which could never pass', { thresholds: { errorRate: 0 } }, 'thresholds.errorRate:'],
    ['no corpus and no prompts', { corpus: undefined }, 'corpus: give either corpus'],
    ['only stages of 0 users', { stages: [{ duration: '10s', target: 0 }] }, 'stages: at least one stage'],
  ])('%s', (_what, change, expected) => {
    expect(issuesOf({ ...valid(), ...change })).toEqual(
      expect.arrayContaining([expect.stringContaining(expected)]),
    );
  });

  it('refuses a time-to-first-token threshold on the poll transport, which cannot see tokens', () => {
    const issues = issuesOf({ ...valid(), transport: { kind: 'poll' } });
    expect(issues).toEqual([
      expect.stringMatching(/^thresholds\.ttftMs: polling cannot see the first token/),
    ]);
  });

  it('refuses an acceptance threshold and a missing model on the openai transport', () => {
    const issues = issuesOf({ ...valid(), transport: { kind: 'openai' } });
    expect(issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^thresholds\.acceptMs:/),
        expect.stringMatching(/^model:/),
      ]),
    );
  });

  it('names the field inside an inline prompt class', () => {
    const prompt = {
      name: 'x',
      weight: 1,
      templates: ['no placeholder'],
      fillers: ['a b c'],
      words: { min: 9, max: 3 },
      maxTokens: { min: 1, max: 5 },
      maxToken: 3,
    };
    const issues = issuesOf({ ...valid(), corpus: undefined, prompts: [prompt] });
    expect(issues).toEqual(
      expect.arrayContaining([
        'prompts[0].templates[0]: a template must contain {text}',
        'prompts[0].words.max: must not be below min',
        'prompts[0].maxToken: unknown field',
      ]),
    );
  });

  it('names the file when it is not JSON, and the corpus file when the corpus is wrong', () => {
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{ "name": "x", }');
    expect(() => loadScenario(broken)).toThrow(/broken\.json: invalid scenario\n {2}- not valid JSON/);

    const corpus = join(dir, 'corpus.json');
    writeFileSync(corpus, JSON.stringify({ prompts: [{ name: 'a', weight: -1 }] }));
    const scenario = join(dir, 'with-corpus.json');
    writeFileSync(scenario, JSON.stringify({ ...valid(), corpus: 'corpus.json' }));
    expect(() => loadScenario(scenario)).toThrow(
      /corpus\.json: invalid scenario[\s\S]*prompts\[0\]\.weight:/,
    );
  });
});

describe('durations, as k6 writes them', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['1.5s', 1500],
    ['2m', 120_000],
    ['1m30s', 90_000],
    ['1h', 3_600_000],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '10', 's', '1x', '1 s', '-1s', '1m 30s'])('%j is not a duration', (text) => {
    expect(isDuration(text)).toBe(false);
    expect(() => parseDuration(text)).toThrow(/not a duration/);
  });
});
