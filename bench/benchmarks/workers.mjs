import { directCompletion, submitJobs } from '../lib/generation.mjs';
import { createAgent } from '../lib/http.mjs';
import { runPool } from '../lib/pool.mjs';
import { cpuMeter } from '../lib/proc.mjs';
import { ratio, summarize } from '../lib/stats.mjs';
import {
  WORKER_DEFAULT_TIMERS,
  providersWithConcurrency,
  serviceLogTail,
  simulatorEnv,
  startStack,
} from '../lib/stack.mjs';

const TERMINAL = ['completed', 'failed', 'cancelled'];

/**
 * Worker efficiency against Little's law: one worker process with `WORKER_CONCURRENCY=c` slots,
 * an upstream of fixed latency L and a backlog larger than c should complete c / L jobs a second.
 * For each c, a backlog of c × jobsPerSlot jobs is submitted through the API while no worker runs
 * (so the API's accept rate cannot limit what is measured), then a worker with c slots is started
 * and the completions are timed from the job rows (`completed_at`). The throughput is taken between
 * the c-th completion and the c-th last, when every slot has work: the filling and the draining are
 * left out. L is measured on the simulator directly, by this process, at low load.
 *
 * Nothing else caps the worker: the providers file allows 2 × the most slots per backend (its
 * default is 64), it sets no fleet limits, and the test stack's tenant limits (100,000 active jobs,
 * a million requests a minute) are far above any backlog here.
 *
 * @param {{ concurrency: number[], jobsPerSlot: number, maxTokens: number, directSamples: number,
 *           directConcurrency: number, submitConcurrency: number,
 *           simulator: { ttftMs: number, tokenMs: number, jitter: number } }} settings
 * @param {{ resources: import('../lib/resources.mjs').Resources, log: (m: string) => void, runId: string }} ctx
 */
export async function workersBenchmark(settings, { resources, log, runId }) {
  const most = Math.max(...settings.concurrency);
  log('workers: starting an llmq stack with 0 workers (one is started per concurrency level)');
  const { stack, release } = await startStack(resources, 'workers stack', {
    workers: 0,
    simulatorEnv: simulatorEnv(settings.simulator),
    providers: providersWithConcurrency(2 * most),
  });
  const agent = createAgent();
  try {
    log(
      `workers: upstream latency L on the simulator directly, ${settings.directSamples} streams, ${settings.directConcurrency} at once`,
    );
    const direct = await runPool(settings.directSamples, settings.directConcurrency, (i) =>
      directCompletion({
        agent,
        simulatorUrl: stack.simulatorUrl,
        prompt: `bench ${runId} workers direct #${i}: explain Little's law`,
        maxTokens: settings.maxTokens,
      }),
    );
    if (direct.errors.length > 0)
      throw new Error(`the simulator failed ${direct.errors.length} direct streams: ${direct.errors[0]}`);
    const latencyMs = summarize(direct.samples.map((s) => s.ms));

    const levels = [];
    for (const c of settings.concurrency) {
      levels.push(await runLevel({ stack, agent, c, latencyMs: latencyMs.mean, settings, log, runId }));
    }
    const { ttftMs, tokenMs } = settings.simulator;
    return {
      settings: { ...settings, workerEnv: WORKER_DEFAULT_TIMERS, providerConcurrency: 2 * most },
      latencyMs: { nominal: ttftMs + (settings.maxTokens - 1) * tokenMs, direct: latencyMs },
      levels,
      serviceLogs: serviceLogTail(stack),
      problems: levels.flatMap((l) => l.problems),
    };
  } finally {
    agent.destroy();
    await release();
  }
}

/** One concurrency level: submit the backlog, start a worker with c slots, time its completions. */
async function runLevel({ stack, agent, c, latencyMs, settings, log, runId }) {
  const tenant = `bench-workers-c${c}`;
  const n = c * settings.jobsPerSlot;
  const key = await stack.createKey(tenant);
  log(`workers: c=${c}: submitting ${n} jobs while no worker runs`);
  const submitted = await submitJobs({
    agent,
    apiUrl: stack.apiUrl,
    key,
    count: n,
    concurrency: settings.submitConcurrency,
    prompt: (i) => `bench ${runId} workers c=${c} #${i}: explain Little's law`,
    maxTokens: settings.maxTokens,
  });

  const simBefore = await stack.simulatorStats();
  log(`workers: c=${c}: starting a worker with WORKER_CONCURRENCY=${c}`);
  const worker = await stack.startWorker({ ...WORKER_DEFAULT_TIMERS, WORKER_CONCURRENCY: String(c) });
  const readyAt = Date.now();
  const cpu = cpuMeter({
    worker: worker.pid,
    pglite: stack.pglite.pid,
    redis: stack.redis.pid,
    simulator: stack.simulator.pid,
    api: stack.api.pid,
  });
  // Generous: a tenth of the ideal rate, and never under a minute.
  const timeoutMs = Math.max(60_000, ((10 * n) / c) * latencyMs);
  let inFlight;
  let usage;
  try {
    inFlight = await sampleUntilDone({ stack, tenant, n, timeoutMs });
    usage = cpu.stop(); // before the worker exits: its CPU is read from /proc
  } finally {
    await worker.stop();
    stack.workers.splice(stack.workers.indexOf(worker), 1);
  }
  const simAfter = await stack.simulatorStats();

  const { rows } = await stack.pool.query(
    `SELECT status, extract(epoch FROM started_at) * 1000 AS started, extract(epoch FROM completed_at) * 1000 AS completed
       FROM jobs WHERE tenant_id = $1`,
    [tenant],
  );
  const statuses = {};
  for (const r of rows) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  const done = rows
    .filter((r) => r.status === 'completed')
    .map((r) => ({ started: +r.started, completed: +r.completed }));
  const ends = Float64Array.from(done.map((r) => r.completed)).sort();

  // Every slot has work between the c-th completion and the c-th last.
  const [from, to] = [c - 1, done.length - c - 1];
  const window = to > from ? { jobs: to - from, seconds: (ends[to] - ends[from]) / 1000 } : null;
  const jobsPerSecond = window ? window.jobs / window.seconds : NaN;
  const idealJobsPerSecond = c / (latencyMs / 1000);
  const upstream = window ? inFlight.filter((s) => s.at >= ends[from] && s.at <= ends[to]) : [];
  const meanInFlight = upstream.reduce((sum, s) => sum + s.inFlight, 0) / upstream.length;

  const problems = [];
  if ((statuses.completed ?? 0) !== n)
    problems.push(`c=${c}: ${statuses.completed ?? 0} of ${n} jobs completed (${JSON.stringify(statuses)})`);
  if (!window) problems.push(`c=${c}: too few completions to measure a saturated window`);
  const upstreamCalls = simAfter.requests.chatStream - simBefore.requests.chatStream;
  if (upstreamCalls !== n) problems.push(`c=${c}: ${upstreamCalls} upstream calls for ${n} jobs`);
  return {
    concurrency: c,
    jobs: n,
    submitSeconds: submitted.seconds,
    statuses,
    upstreamCalls,
    // From the worker being ready to the last completion.
    drainSeconds: ends.length > 0 ? (ends[ends.length - 1] - readyAt) / 1000 : NaN,
    window,
    jobsPerSecond,
    idealJobsPerSecond,
    efficiency: ratio(jobsPerSecond, idealJobsPerSecond),
    // Started (the worker took it) to completed (its row says so), per job.
    inServiceMs: summarize(done.map((r) => r.completed - r.started)),
    upstreamInFlight: { mean: meanInFlight, samples: upstream.length, shareOfSlots: meanInFlight / c },
    cpu: usage,
    problems,
  };
}

/**
 * Polls the simulator (calls in flight) every 100 ms and the job rows every 500 ms until every job
 * of the tenant has ended; returns the simulator's samples.
 */
async function sampleUntilDone({ stack, tenant, n, timeoutMs }) {
  const samples = [];
  const deadline = Date.now() + timeoutMs;
  let ended = 0;
  for (let tick = 0; Date.now() < deadline; tick++) {
    const stats = await stack.simulatorStats();
    samples.push({ at: Date.now(), inFlight: stats.inFlight });
    if (tick % 5 === 0) {
      const { rows } = await stack.pool.query(
        'SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1 AND status = ANY($2)',
        [tenant, TERMINAL],
      );
      ended = rows[0].n;
      if (ended >= n) return samples;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${tenant}: ${ended} of ${n} jobs ended within ${Math.round(timeoutMs / 1000)} s`);
}
