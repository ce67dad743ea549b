// @ts-check
/**
 * A run's report folder: `report.md` (what ran, whether it passed, the figures), `summary.json`
 * (the same for machines) and one SVG chart per figure over time.
 */
const { mkdirSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { formatDuration } = require('./duration');
const { percentile } = require('./stats');
const { lineChart } = require('./svg');

/**
 * @typedef {import('./scenario.js').Scenario} Scenario
 * @typedef {import('./recorder.js').Recorder} Recorder
 * @typedef {import('./thresholds.js').ThresholdResult} ThresholdResult
 * @typedef {{ kind: 'local', url: string, workers: number, workerConcurrency: number,
 *             simulator: { ttftMs: number, tokenMs: number, jitter: number } }
 *          | { kind: 'remote', url: string }} Target
 * @typedef {{ scenario: Scenario, target: Target, recorder: Recorder, thresholds: ThresholdResult[],
 *             startedAt: Date, runMs: number }} RunResult
 */

/**
 * What each transport can see: polling sees no tokens, the OpenAI facade answers no 202.
 * @param {'poll' | 'sse' | 'openai'} kind
 */
function measures(kind) {
  return { accept: kind !== 'openai', ttft: kind !== 'poll', completion: true };
}

const CHARTS = {
  'latency-accept.svg': 'Acceptance latency (submit to 202)',
  'latency-ttft.svg': 'Time to first token',
  'latency-completion.svg': 'Completion time (submit to full answer)',
  'throughput.svg': 'Throughput',
  'errors.svg': 'Error rate',
  'queue-depth.svg': 'Queue depth',
  'vus.svg': 'Virtual users',
};

/**
 * Writes the report into `dir` (created); returns the files written.
 * @param {string} dir
 * @param {RunResult} run
 */
function writeReport(dir, run) {
  mkdirSync(dir, { recursive: true });
  const charts = renderCharts(run);
  for (const [file, svg] of Object.entries(charts)) writeFileSync(join(dir, file), svg);
  const summary = summaryOf(run);
  writeFileSync(join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  writeFileSync(join(dir, 'report.md'), markdown(run, summary));
  return ['report.md', 'summary.json', ...Object.keys(charts)];
}

/** @param {RunResult} run */
function summaryOf(run) {
  const totals = run.recorder.totals();
  const { queue } = run.recorder;
  return {
    scenario: run.scenario.name,
    file: run.scenario.file,
    transport: run.scenario.transport.kind,
    target: run.target,
    startedAt: run.startedAt.toISOString(),
    runMs: Math.round(run.runMs),
    passed: run.thresholds.every((t) => t.ok),
    thresholds: run.thresholds.map((t) => ({ ...t, value: finiteOrNull(t.value) })),
    requests: {
      started: totals.started,
      finished: totals.finished,
      completed: totals.completed,
      failed: totals.failed,
      interrupted: totals.interrupted,
      cached: totals.cached,
      errorRate: finiteOrNull(totals.errorRate),
      completedPerSecond: totals.completed / Math.max(run.runMs / 1000, 0.001),
      errorsByType: totals.errorsByType,
    },
    latencyMs: {
      accept: cleanSummary(totals.acceptMs),
      ttft: cleanSummary(totals.ttftMs),
      completion: cleanSummary(totals.completionMs),
    },
    byClass: run.recorder.byClass().map((c) => ({
      ...c,
      completionMs: cleanSummary(c.completionMs),
      ttftMs: cleanSummary(c.ttftMs),
    })),
    queue: {
      samples: queue.length,
      unavailable: run.recorder.queueUnavailable,
      maxWaiting: queue.length ? Math.max(...queue.map((q) => q.waiting)) : null,
      maxActive: queue.length ? Math.max(...queue.map((q) => q.active)) : null,
    },
    maxVus: run.recorder.vus.length ? Math.max(...run.recorder.vus.map((v) => v.vus)) : 0,
  };
}

/** @param {number} v */
function finiteOrNull(v) {
  return Number.isFinite(v) ? v : null;
}

/** @param {import('./stats.js').Summary} s */
function cleanSummary(s) {
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, finiteOrNull(v)]));
}

/**
 * Buckets of about a sixtieth of the run (1 s at least): enough points to see a trend, few
 * enough samples in each for a p99 to mean something.
 * @param {number} runMs
 */
function bucketSize(runMs) {
  return Math.max(1000, Math.ceil(runMs / 60 / 1000) * 1000);
}

/**
 * @param {RunResult} run
 * @returns {Record<string, string>}
 */
function renderCharts(run) {
  const bucketMs = bucketSize(run.runMs);
  const rows = run.recorder.buckets(bucketMs, run.runMs);
  const xMax = run.runMs / 1000;
  const mid = (/** @type {{ t: number }} */ r) => (r.t + bucketMs / 2) / 1000;
  const kind = run.scenario.transport.kind;
  const latency = (/** @type {'accept' | 'ttft' | 'completion'} */ name) => {
    const file = /** @type {keyof typeof CHARTS} */ (`latency-${name}.svg`);
    const key = /** @type {const} */ ({ accept: 'acceptMs', ttft: 'ttftMs', completion: 'completionMs' })[
      name
    ];
    const unseen = measures(kind)[name] ? '' : ` (the ${kind} transport cannot measure it)`;
    return lineChart({
      title: `${CHARTS[file]}, per ${bucketMs / 1000} s${unseen}`,
      yLabel: 'ms',
      xMax,
      series: [0.5, 0.95, 0.99].map((p) => ({
        name: `p${Math.round(p * 100)}`,
        points: rows.map((r) => [mid(r), r[key].length ? percentile(r[key], p) : null]),
      })),
    });
  };
  const perSecond = (/** @type {number} */ n) => n / (bucketMs / 1000);
  return {
    'latency-accept.svg': latency('accept'),
    'latency-ttft.svg': latency('ttft'),
    'latency-completion.svg': latency('completion'),
    'throughput.svg': lineChart({
      title: `${CHARTS['throughput.svg']}, per ${bucketMs / 1000} s`,
      yLabel: 'requests / s',
      xMax,
      series: [
        { name: 'submitted', points: rows.map((r) => [mid(r), perSecond(r.started)]) },
        { name: 'completed', points: rows.map((r) => [mid(r), perSecond(r.completed)]) },
        { name: 'failed', points: rows.map((r) => [mid(r), perSecond(r.failed)]) },
      ],
    }),
    'errors.svg': lineChart({
      title: `${CHARTS['errors.svg']} (failed / finished), per ${bucketMs / 1000} s`,
      yLabel: '%',
      xMax,
      series: [
        {
          name: 'error rate',
          color: '#d62728',
          points: rows.map((r) => [
            mid(r),
            r.completed + r.failed > 0 ? (100 * r.failed) / (r.completed + r.failed) : null,
          ]),
        },
      ],
    }),
    'queue-depth.svg': lineChart({
      title: CHARTS['queue-depth.svg'] + (run.recorder.queueUnavailable ? ' (not available)' : ''),
      yLabel: 'jobs',
      xMax,
      series: /** @type {const} */ (['waiting', 'active', 'delayed']).map((key) => ({
        name: key,
        points: run.recorder.queue.map((q) => [q.t / 1000, q[key]]),
      })),
    }),
    'vus.svg': lineChart({
      title: CHARTS['vus.svg'],
      yLabel: 'virtual users',
      xMax,
      series: [
        { name: 'running', points: run.recorder.vus.map((v) => [v.t / 1000, v.vus]) },
        { name: 'target', points: run.recorder.vus.map((v) => [v.t / 1000, v.target]) },
      ],
    }),
  };
}

/**
 * Milliseconds for a table: 2 decimals below 10, 1 below 100, whole above; "n/a" for none.
 * @param {number | null | undefined} v
 */
function ms(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return 'n/a';
  if (v < 10) return v.toFixed(2);
  if (v < 100) return v.toFixed(1);
  return Math.round(v).toLocaleString('en-US');
}

/** @param {number | null} v */
function pct(v) {
  return v === null || !Number.isFinite(v) ? 'n/a' : `${(v * 100).toFixed(2)} %`;
}

/**
 * @param {RunResult} run
 * @param {ReturnType<typeof summaryOf>} summary
 */
function markdown(run, summary) {
  const { scenario, target } = run;
  const r = summary.requests;
  const verdict = summary.passed ? 'PASSED' : 'FAILED';
  const lines = [
    `# Load test \`${scenario.name}\`: ${verdict}`,
    '',
    scenario.description,
    '',
    `- started ${summary.startedAt}, ran ${formatDuration(run.runMs)} (stages ${formatDuration(scenario.totalMs)}, graceful stop up to ${formatDuration(scenario.gracefulStopMs)})`,
    `- transport **${scenario.transport.kind}**${scenario.transport.pollIntervalMs ? ` (poll every ${scenario.transport.pollIntervalMs} ms)` : ''}, model ${scenario.model ?? 'the server default'}, cache ${scenario.cache}`,
    `- target ${describeTarget(target)}`,
    `- scenario file \`${scenario.file}\`${scenario.corpusFile ? `, corpus \`${scenario.corpusFile}\`` : ''}`,
    '',
    '## Thresholds',
    '',
    '| metric | threshold | k6 form | measured | result |',
    '| --- | --- | --- | ---: | --- |',
    ...run.thresholds.map(
      (t) =>
        `| ${t.metric} | ${t.stat} < ${t.limit} | \`${t.k6}\` | ${t.metric === 'errorRate' ? pct(t.value) : ms(t.value)} | ${t.ok ? 'pass' : '**FAIL**'} |`,
    ),
    ...(run.thresholds.length === 0 ? ['| (none) | | | | pass |'] : []),
    '',
    '## Requests',
    '',
    '| started | completed | failed | interrupted | answered from cache | error rate | completed / s |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| ${r.started} | ${r.completed} | ${r.failed} | ${r.interrupted} | ${r.cached} | ${pct(r.errorRate)} | ${r.completedPerSecond.toFixed(2)} |`,
    '',
    '## Latency (ms)',
    '',
    '| metric | count | min | p50 | p90 | p95 | p99 | max | avg |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...Object.entries(summary.latencyMs)
      .filter(
        ([name]) => measures(scenario.transport.kind)[/** @type {'accept' | 'ttft' | 'completion'} */ (name)],
      )
      .map(
        ([name, s]) =>
          `| ${name} | ${s.count ?? 0} | ${ms(s.min)} | ${ms(s.p50)} | ${ms(s.p90)} | ${ms(s.p95)} | ${ms(s.p99)} | ${ms(s.max)} | ${ms(s.avg)} |`,
      ),
    '',
    '## Errors by type',
    '',
    ...errorLines(r.errorsByType, r.finished),
    '',
    '## By prompt class',
    '',
    ...classTable(scenario, summary),
    '',
    '## Queue depth',
    '',
    summary.queue.unavailable
      ? `Not sampled: ${summary.queue.unavailable}.`
      : `${summary.queue.samples} samples of \`GET /api/metrics/scaling\`: at most ${summary.queue.maxWaiting} jobs waiting and ${summary.queue.maxActive} running.`,
    '',
    '## Charts',
    '',
    ...Object.entries(CHARTS).map(([file, title]) => `![${title}](${file})`),
    '',
    '## Stages',
    '',
    '| # | duration | target VUs |',
    '| ---: | --- | ---: |',
    ...scenario.stages.map((s, i) => `| ${i + 1} | ${s.duration} | ${s.target} |`),
    '',
    `Think time ${scenario.thinkTimeMs.min}–${scenario.thinkTimeMs.max} ms, request timeout ${formatDuration(scenario.requestTimeoutMs)}, seed ${scenario.seed ?? 'random'}; at most ${summary.maxVus} virtual users ran.`,
    '',
  ];
  return lines.join('\n');
}

/**
 * Requests per prompt class against its weight, and how long each class takes.
 * @param {Scenario} scenario
 * @param {ReturnType<typeof summaryOf>} summary
 */
function classTable(scenario, summary) {
  const ttft = measures(scenario.transport.kind).ttft;
  const finished = Math.max(summary.requests.finished, 1);
  const totalWeight = scenario.prompts.reduce((sum, p) => sum + p.weight, 0);
  return [
    `| class | weight | finished | share | failed |${ttft ? ' TTFT p95 (ms) |' : ''} completion p50 (ms) | completion p95 (ms) |`,
    `| --- | ---: | ---: | ---: | ---: |${ttft ? ' ---: |' : ''} ---: | ---: |`,
    ...scenario.prompts.map((p) => {
      const c = summary.byClass.find((b) => b.className === p.name);
      const cells = [
        p.name,
        pct(p.weight / totalWeight),
        c?.finished ?? 0,
        pct((c?.finished ?? 0) / finished),
        c?.failed ?? 0,
        ...(ttft ? [ms(c?.ttftMs.p95)] : []),
        ms(c?.completionMs.p50),
        ms(c?.completionMs.p95),
      ];
      return `| ${cells.join(' | ')} |`;
    }),
  ];
}

/**
 * @param {Record<string, number>} byType
 * @param {number} finished
 */
function errorLines(byType, finished) {
  const entries = Object.entries(byType).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return ['None.'];
  return [
    '| type | count | share of finished |',
    '| --- | ---: | ---: |',
    ...entries.map(([type, n]) => `| ${type} | ${n} | ${pct(n / Math.max(finished, 1))} |`),
  ];
}

/** @param {Target} target */
function describeTarget(target) {
  if (target.kind === 'remote') return `\`${target.url}\``;
  const s = target.simulator;
  return `a local stack at \`${target.url}\` started by the runner: ${target.workers} worker(s) at concurrency ${target.workerConcurrency}, simulator TTFT ${s.ttftMs} ms, ${s.tokenMs} ms a token, jitter ${s.jitter}`;
}

module.exports = { writeReport, renderCharts, summaryOf, bucketSize };
