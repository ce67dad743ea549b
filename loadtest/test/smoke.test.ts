import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useStack } from '@llmq/testing';

/**
 * The runner end to end against real stacks: it proves that a scenario runs, that the report is
 * written and that the exit code follows the thresholds. It never asserts on the figures
 * themselves (timing assertions on a shared 2-core machine would be flaky).
 */
const RUN = join(__dirname, '..', 'run.mjs');
const CORPUS = join(__dirname, '..', 'scenarios', 'corpora', 'seed-mix.json');
const CHARTS = [
  'latency-accept.svg',
  'latency-ttft.svg',
  'latency-completion.svg',
  'throughput.svg',
  'errors.svg',
  'queue-depth.svg',
  'vus.svg',
];

const dir = mkdtempSync(join(tmpdir(), 'llmq-loadtest-smoke-'));
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM'); // run.mjs stops its stack
  rmSync(dir, { recursive: true, force: true });
});

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RUN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LLMQ_URL: '', LLMQ_API_KEY: '', ...env },
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function explain({ code, stdout, stderr }: Outcome): string {
  return `run.mjs exited ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`;
}

describe('npm run loadtest -- smoke (the runner starts its own stack)', () => {
  it('runs the scenario, writes the report and exits 0 when every threshold is met', async () => {
    const out = join(dir, 'smoke');
    const outcome = await run(['smoke', '--out', out]);
    if (outcome.code !== 0) throw new Error(explain(outcome));

    for (const file of ['report.md', 'summary.json', ...CHARTS])
      expect(existsSync(join(out, file))).toBe(true);
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary.passed).toBe(true);
    expect(summary.target.kind).toBe('local');
    expect(summary.requests.completed).toBeGreaterThan(0);
    expect(summary.latencyMs.ttft.count).toBeGreaterThan(0);
    expect(summary.queue.samples).toBeGreaterThan(0);
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toMatch(/^# Load test `smoke`: PASSED/);
    // Live progress: one line a second on stderr.
    expect(outcome.stderr).toMatch(/\[loadtest\] +\d+s stage 1\/3 vus \d+\/\d+ \| reqs \d+/);
  }, 120_000);
});

describe('the runner against a running API (--url, --key)', () => {
  const { stack, keys } = useStack({}, ['loadtest']);

  it('exits 99, as k6 does, when a threshold cannot be met, and says which', async () => {
    const scenario = join(dir, 'impossible.json');
    writeFileSync(
      scenario,
      JSON.stringify({
        name: 'impossible',
        transport: { kind: 'poll', pollInterval: '100ms' },
        corpus: CORPUS,
        stages: [
          { duration: '1s', target: 2 },
          { duration: '3s', target: 2 },
        ],
        gracefulStop: '5s',
        thresholds: { completionMs: { p95: 0.001 }, errorRate: 0.5 },
      }),
    );
    const out = join(dir, 'impossible');
    const outcome = await run([scenario, '--url', stack.apiUrl, '--key', keys.loadtest!, '--out', out]);
    if (outcome.code !== 99) throw new Error(explain(outcome));

    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(summary.passed).toBe(false);
    expect(summary.target).toEqual({ kind: 'remote', url: stack.apiUrl });
    expect(summary.requests.started).toBeGreaterThan(0);
    expect(summary.thresholds).toEqual([
      expect.objectContaining({ metric: 'completionMs', ok: false }),
      expect.objectContaining({ metric: 'errorRate', ok: true }),
    ]);
    expect(outcome.stdout).toContain('FAIL  llmq_completion_ms: p(95)<0.001');
  }, 60_000);

  it('exits 2 and names the field when the scenario has a mistake, before sending anything', async () => {
    const scenario = join(dir, 'typo.json');
    writeFileSync(
      scenario,
      JSON.stringify({
        name: 'typo',
        transport: { kind: 'sse' },
        corpus: CORPUS,
        stages: [{ duration: '1s', target: 1 }],
        thresholds: { ttftMs: { p95x: 100 } },
      }),
    );
    const outcome = await run([scenario, '--url', stack.apiUrl, '--key', keys.loadtest!]);
    expect(outcome.code).toBe(2);
    expect(outcome.stderr).toContain('thresholds.ttftMs.p95x: unknown field');
  });
});
