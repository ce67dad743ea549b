import { performance } from 'node:perf_hooks';
import { helloTarget, loadProblems, measure, startHello } from '../lib/autocannon.mjs';
import { createAgent, requestJson, streamEvents } from '../lib/http.mjs';
import { runPool } from '../lib/pool.mjs';
import { mulberry32 } from '../lib/random.mjs';
import { ratio, summarize } from '../lib/stats.mjs';
import { serviceLogTail, simulatorEnv, startStack } from '../lib/stack.mjs';

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
/** The reference workload: the same requests with the cache off for each of them. */
const NO_CACHE = { 'cache-control': 'no-cache, no-store' };
/** How often the warm-up asks again until the warmed request comes back from Redis. */
const WARM_TRIES = 5;

/**
 * The response cache, in two parts on one stack:
 *
 * - upstream calls saved: a workload in which some requests repeat earlier prompts, sent by
 *   callers that each wait for their answer, once with the cache and once with
 *   `Cache-Control: no-cache, no-store` on every request (the reference: one upstream call per
 *   request), counting upstream calls at the simulator;
 * - exact hit latency at the API: one warmed deterministic request loaded by autocannon, next to
 *   the Express hello route loaded by the same generator at the same concurrency.
 *
 * @param {{ maxTokens: number, workers: number, workerConcurrency: number,
 *           simulator: { ttftMs: number, tokenMs: number, jitter: number },
 *           hits: { connections: number, seconds: number, warmupSeconds: number },
 *           workload: { requests: number, warmupRequests: number, repeatShare: number, callers: number, seed: number } }} settings
 * @param {{ resources: import('../lib/resources.mjs').Resources, log: (m: string) => void, runId: string }} ctx
 */
export async function cacheBenchmark(settings, { resources, log, runId }) {
  const sim = settings.simulator;
  log(
    `cache: starting the Express hello reference and an llmq stack with ${settings.workers} worker(s) ` +
      `(simulator ${sim.ttftMs} ms + ${sim.tokenMs} ms/token)`,
  );
  const [hello, { stack, release }] = await Promise.all([
    startHello(resources),
    startStack(resources, 'cache stack', {
      workers: settings.workers,
      workerEnv: { WORKER_CONCURRENCY: String(settings.workerConcurrency) },
      simulatorEnv: simulatorEnv(sim),
    }),
  ]);
  const agent = createAgent();
  try {
    const ctx = { stack, agent, settings, log, runId };
    // The workload first, while the jobs table is small; the hit load adds a row per hit.
    const workload = await runWorkload(ctx);
    const hits = await runHits({ ...ctx, hello });
    return {
      settings,
      hits,
      workload,
      ratios: {
        hitThroughput: ratio(hits.llmq.rps, hits.reference.rps),
        hitP50: ratio(hits.llmq.latencyMs.p50, hits.reference.latencyMs.p50),
        hitP99: ratio(hits.llmq.latencyMs.p99, hits.reference.latencyMs.p99),
        upstreamCalls: ratio(workload.cached.upstreamCalls, workload.reference.upstreamCalls),
        answerMean: ratio(workload.cached.answerMs.mean, workload.reference.answerMs.mean),
      },
      serviceLogs: serviceLogTail(stack),
      problems: [...hits.problems, ...workload.problems],
    };
  } finally {
    agent.destroy();
    await hello.release();
    await release();
  }
}

// --- upstream calls saved ---------------------------------------------------------------------

async function runWorkload({ stack, agent, settings, log, runId }) {
  const w = settings.workload;
  const plan = workloadPlan(w.requests, w.repeatShare, w.seed);
  const body = (pass, prompt) => ({
    prompt: `bench ${runId} cache ${pass} #${prompt}: summarise the trade-offs of write-ahead logging`,
    temperature: 0,
    max_tokens: settings.maxTokens,
  });

  const warmKey = await stack.createKey('bench-cache-warmup');
  log(`cache: workload warm-up, ${w.warmupRequests} distinct requests without the cache`);
  await runPool(w.warmupRequests, w.callers, (i) =>
    answer({ stack, agent, key: warmKey, body: body('warm-up', i), headers: NO_CACHE }),
  );

  const passes = {};
  for (const [name, headers] of [
    ['reference', NO_CACHE],
    ['cached', {}],
  ]) {
    const tenant = `bench-cache-${name}`; // the cache is per tenant: the passes share nothing
    const key = await stack.createKey(tenant);
    log(
      `cache: workload ${name === 'cached' ? 'with the cache' : `without it (Cache-Control: ${NO_CACHE['cache-control']})`}: ` +
        `${w.requests} requests, ${plan.repeats} repeat earlier prompts, ${w.callers} callers`,
    );
    const before = await stack.simulatorStats();
    const run = await runPool(w.requests, w.callers, async (i) => ({
      i,
      ...(await answer({ stack, agent, key, body: body(name, plan.prompts[i]), headers })),
    }));
    const after = await stack.simulatorStats();
    passes[name] = await passFacts({ stack, plan, run, before, after });
  }
  const { reference, cached } = passes;
  return {
    requests: w.requests,
    repeats: plan.repeats,
    distinctPrompts: plan.distinct,
    reference,
    cached,
    savedCalls: reference.upstreamCalls - cached.upstreamCalls,
    savedPercent: (100 * (reference.upstreamCalls - cached.upstreamCalls)) / reference.upstreamCalls,
    problems: workloadProblems(w, plan, reference, cached),
  };
}

/**
 * Which requests repeat an earlier prompt, the same for every run (a seeded generator): exactly
 * `round(n * repeatShare)` repeats at shuffled positions, each of a prompt drawn uniformly from
 * those already sent. Late in the workload most earlier prompts were answered long ago; a repeat
 * of one of the last few is still in flight and is coalesced rather than answered from the cache.
 */
export function workloadPlan(n, repeatShare, seed) {
  const random = mulberry32(seed);
  const repeats = Math.min(n - 1, Math.round(n * repeatShare));
  const isRepeat = Array.from({ length: n }, (_, i) => i < repeats);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [isRepeat[i], isRepeat[j]] = [isRepeat[j], isRepeat[i]];
  }
  if (isRepeat[0]) {
    // The first request has nothing to repeat: swap it with the first new one.
    isRepeat[isRepeat.indexOf(false)] = true;
    isRepeat[0] = false;
  }
  const prompts = [];
  /** firstOf[p]: the request that sent prompt p first. */
  const firstOf = [];
  for (let i = 0; i < n; i++) {
    if (isRepeat[i]) prompts.push(Math.floor(random() * firstOf.length));
    else {
      prompts.push(firstOf.length);
      firstOf.push(i);
    }
  }
  return { prompts, firstOf, repeats, distinct: firstOf.length };
}

/**
 * One caller's request as a user sees it: submit, and if it was queued (202) read the job's
 * stream to its end. Resolves when the answer is there; a failed job is an error.
 */
async function answer({ stack, agent, key, body, headers = {} }) {
  const auth = { authorization: `Bearer ${key}` };
  const sentAt = performance.now();
  const res = await requestJson({
    agent,
    url: `${stack.apiUrl}/api/generate`,
    headers: { ...auth, ...headers },
    body,
  });
  if (res.status === 200) {
    if (res.json?.status !== 'completed' || typeof res.json.result !== 'string')
      throw new Error(`a 200 that is not a completed answer: ${res.text.slice(0, 300)}`);
    return {
      status: 200,
      source: res.json.source,
      jobId: res.json.jobId,
      sentAt,
      answeredAt: performance.now(),
    };
  }
  if (res.status !== 202)
    throw new Error(`POST /api/generate answered ${res.status}: ${res.text.slice(0, 300)}`);
  let terminal = null;
  let terminalData = '';
  const stream = await streamEvents({
    agent,
    url: new URL(res.json.streamUrl, stack.apiUrl).href,
    headers: auth,
    onEvent: ({ event, data }) => {
      if (TERMINAL.has(event)) {
        terminal = event;
        terminalData = data;
      }
    },
  });
  if (stream.status !== 200) throw new Error(`GET stream answered ${stream.status}: ${stream.text}`);
  if (terminal !== 'completed')
    throw new Error(`the job ended ${terminal ?? 'without a terminal event'}: ${terminalData.slice(0, 300)}`);
  return { status: 202, jobId: res.json.jobId, sentAt, answeredAt: performance.now() };
}

/**
 * What one pass did: how it was answered (200 from which cache layer, 202), which queued jobs
 * made an upstream call of their own (the job row names the backend that served it; a job that
 * followed an identical one in flight, or that the worker found in the cache, names none), and
 * how many calls the simulator counted.
 */
async function passFacts({ stack, plan, run, before, after }) {
  const samples = run.samples;
  /** @type {Record<string, number>} */
  const statuses = {};
  /** @type {Record<string, number>} */
  const sources = {};
  for (const s of samples) {
    statuses[s.status] = (statuses[s.status] ?? 0) + 1;
    if (s.status === 200) sources[s.source] = (sources[s.source] ?? 0) + 1;
  }
  const queued = samples.filter((s) => s.status === 202).map((s) => s.jobId);
  const { rows } = await stack.pool.query(
    `SELECT count(*) FILTER (WHERE backend_id IS NOT NULL)::int AS upstream,
            count(*) FILTER (WHERE backend_id IS NULL)::int AS without,
            count(*) FILTER (WHERE status <> 'completed')::int AS unfinished
       FROM jobs WHERE id = ANY($1::uuid[])`,
    [queued],
  );
  // A repeat sent before its first request was answered (as its caller saw it) could not be a hit.
  const byIndex = new Map(samples.map((s) => [s.i, s]));
  let repeatsWhileFirstInFlight = 0;
  for (let i = 0; i < plan.prompts.length; i++) {
    const first = plan.firstOf[plan.prompts[i]];
    if (first === i) continue;
    const a = byIndex.get(first);
    const b = byIndex.get(i);
    if (a && b && a.answeredAt > b.sentAt) repeatsWhileFirstInFlight++;
  }
  const calls = (s) => s.requests.chatStream + s.requests.chat;
  return {
    answered: samples.length,
    failed: run.errors.length,
    errorSamples: [...new Set(run.errors)].slice(0, 5),
    seconds: run.seconds,
    statuses,
    sources,
    queuedJobs: {
      upstream: rows[0].upstream,
      withoutUpstreamCall: rows[0].without,
      notCompleted: rows[0].unfinished,
    },
    repeatsWhileFirstInFlight,
    upstreamCalls: calls(after) - calls(before),
    answerMs: summarize(samples.map((s) => s.answeredAt - s.sentAt)),
  };
}

function workloadProblems(w, plan, reference, cached) {
  const problems = [];
  for (const [name, pass] of [
    ['reference', reference],
    ['cached', cached],
  ]) {
    if (pass.failed > 0)
      problems.push(
        `workload (${name}): ${pass.failed} of ${w.requests} requests failed: ${pass.errorSamples.slice(0, 3).join('; ')}`,
      );
    // The simulator's count is the truth; the job rows must tell the same story.
    if (pass.upstreamCalls !== pass.queuedJobs.upstream)
      problems.push(
        `workload (${name}): the simulator counted ${pass.upstreamCalls} calls but ${pass.queuedJobs.upstream} jobs name a backend`,
      );
  }
  if (reference.upstreamCalls !== w.requests)
    problems.push(
      `workload (reference): ${reference.upstreamCalls} upstream calls for ${w.requests} requests without the cache (expected one each)`,
    );
  if (w.requests - cached.upstreamCalls > plan.repeats)
    problems.push(
      `workload (cached): only ${plan.distinct} distinct prompts, yet ${cached.upstreamCalls} upstream calls (fewer than one per prompt)`,
    );
  const otherSources = Object.keys(cached.sources).filter((s) => s !== 'redis' && s !== 'postgres');
  if (otherSources.length > 0)
    problems.push(`workload (cached): hits from unexpected sources ${JSON.stringify(cached.sources)}`);
  if ((reference.statuses['200'] ?? 0) > 0)
    problems.push(
      `workload (reference): ${reference.statuses['200']} answers came from the cache despite no-cache`,
    );
  return problems;
}

// --- exact hit latency ------------------------------------------------------------------------

async function runHits({ stack, agent, settings, log, runId, hello }) {
  const tenant = 'bench-cache-hits';
  const key = await stack.createKey(tenant);
  const body = {
    prompt: `bench ${runId} cache hit: name three queue disciplines`,
    temperature: 0,
    max_tokens: settings.maxTokens,
  };
  const warm = await warmUntilRedisHit({ stack, agent, key, body });
  log(`cache: the hit request answers 200 from Redis (after ${warm.tries} submission(s))`);

  const progress = (m) => log(`cache hits: ${m}`);
  const reference = await measure(helloTarget(hello.url, { classify: true }), settings.hits, progress);
  await hello.release();
  const llmq = await measure(
    {
      name: 'llmq POST /api/generate (cache hit)',
      url: stack.apiUrl,
      expectStatus: 200,
      request: {
        method: 'POST',
        path: '/api/generate',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      },
      classify: (text) => /"source":"(redis|postgres)"/.exec(text)?.[1] ?? 'not a hit',
    },
    settings.hits,
    progress,
  );
  // Each hit records a completed job (so poll and stream work): count what this run wrote.
  const { rows } = await stack.pool.query('SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1', [
    tenant,
  ]);
  return {
    warmup: warm,
    reference,
    llmq,
    jobRows: rows[0].n,
    problems: [...loadProblems(reference, 'hello'), ...loadProblems(llmq, 'redis')],
  };
}

/**
 * Submit the request and wait for its answer, then ask again until the answer comes from
 * Redis. The worker stores the answer just after the job's `completed` event, so the first
 * repeat can still miss (and is then coalesced or found in the cache by the worker).
 */
async function warmUntilRedisHit({ stack, agent, key, body }) {
  const answers = [];
  for (let tries = 1; tries <= WARM_TRIES; tries++) {
    const a = await answer({ stack, agent, key, body });
    answers.push(a.status === 200 ? `200 ${a.source}` : `${a.status}`);
    if (a.status === 200 && a.source === 'redis') return { tries, answers };
    await new Promise((r) => setTimeout(r, 50 * tries));
  }
  throw new Error(
    `the warmed request was not answered from Redis in ${WARM_TRIES} tries: ${answers.join(', ')}`,
  );
}
