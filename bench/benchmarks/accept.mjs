import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { ratio, summarize } from '../lib/stats.mjs';
import { BENCH_DIR, serviceLogTail, startStack, testing } from '../lib/stack.mjs';

/**
 * Accept throughput: how many `POST /api/generate` the API turns into durable, enqueued jobs
 * (202) per second, next to an Express 5 hello route loaded by the same generator at the
 * same concurrency. The stack has no workers, so nothing else competes for the cores.
 *
 * @param {{ connections: number, seconds: number, warmupSeconds: number, maxTokens: number }} settings
 * @param {{ resources: import('../lib/resources.mjs').Resources, log: (m: string) => void, runId: string }} ctx
 */
export async function acceptBenchmark(settings, { resources, log, runId }) {
  log('accept: starting the Express hello reference and an llmq stack with 0 workers');
  const [hello, { stack, release }] = await Promise.all([
    startHello(resources),
    startStack(resources, 'accept stack', { workers: 0 }),
  ]);
  try {
    const key = await stack.createKey('bench-accept');
    const helloTarget = {
      name: 'Express hello',
      url: hello.url,
      expectStatus: 200,
      request: { method: 'GET', path: '/hello' },
    };
    let seq = 0;
    const llmqTarget = {
      name: 'llmq POST /api/generate',
      url: stack.apiUrl,
      expectStatus: 202,
      request: {
        method: 'POST',
        path: '/api/generate',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        // A distinct prompt per request, so no cache or idempotency shortcut can answer for the queue.
        setupRequest: (req) => ({
          ...req,
          body: JSON.stringify({
            prompt: `bench ${runId} accept #${seq++}: a haiku about queues`,
            max_tokens: settings.maxTokens,
          }),
        }),
      },
    };

    const reference = await measure(helloTarget, settings, log);
    await hello.release();
    const llmq = await measure(llmqTarget, settings, log);

    // A 202 is a promise that the job row exists: count the rows this run created.
    const { rows } = await stack.pool.query('SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1', [
      'bench-accept',
    ]);
    const jobRows = rows[0].n;
    const accepted = llmq.warmup.statuses['202'] ?? 0;
    const measured = llmq.statuses['202'] ?? 0;

    return {
      settings: {
        ...settings,
        stackWorkers: 0,
        apiDbPoolMax: 4,
        database: 'PGlite (in-memory, over the wire protocol)',
      },
      reference,
      llmq,
      durability: { accepted202: accepted + measured, jobRows },
      serviceLogs: serviceLogTail(stack),
      ratios: {
        throughput: ratio(llmq.rps, reference.rps),
        p50: ratio(llmq.latencyMs.p50, reference.latencyMs.p50),
        p99: ratio(llmq.latencyMs.p99, reference.latencyMs.p99),
      },
      problems: [...problemsOf(reference), ...problemsOf(llmq)],
    };
  } finally {
    await hello.release();
    await release();
  }
}

/** A warm-up (discarded), then the measured run; latency counts only the expected status. */
async function measure(target, settings, log) {
  log(
    `accept: ${target.name}: ${settings.warmupSeconds} s warm-up, then ${settings.seconds} s at ${settings.connections} connections`,
  );
  const warmup = await load(target, settings.connections, settings.warmupSeconds);
  const run = await load(target, settings.connections, settings.seconds);
  return { ...run, warmup: { requests: warmup.requests, statuses: warmup.statuses, errors: warmup.errors } };
}

async function load(target, connections, seconds) {
  const latencies = [];
  /** @type {Record<string, number>} */
  const statuses = {};
  const errorSamples = new Set();
  const started = performance.now();
  const instance = autocannon({
    url: target.url,
    connections,
    duration: seconds,
    timeout: 10,
    requests: [target.request],
  });
  instance.on('response', (_client, status, _bytes, ms) => {
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status === target.expectStatus) latencies.push(ms);
  });
  instance.on('reqError', (error) => {
    if (errorSamples.size < 5) errorSamples.add(String(error?.message ?? error));
  });
  const result = await instance;
  const elapsedSeconds = (performance.now() - started) / 1000;
  const ok = statuses[target.expectStatus] ?? 0;
  const requests = Object.values(statuses).reduce((s, n) => s + n, 0);
  return {
    target: target.name,
    url: `${target.request.method} ${target.url}${target.request.path}`,
    seconds: result.duration || elapsedSeconds,
    requests,
    ok,
    rps: ok / (result.duration || elapsedSeconds),
    latencyMs: summarize(latencies),
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
    errorSamples: [...errorSamples],
  };
}

function problemsOf(m) {
  const problems = [];
  const unexpected = m.requests - m.ok;
  if (m.ok === 0) problems.push(`${m.target}: no successful response`);
  if (unexpected > 0)
    problems.push(
      `${m.target}: ${unexpected} of ${m.requests} answers were not the expected status (${JSON.stringify(m.statuses)})`,
    );
  if (m.errors > 0)
    problems.push(
      `${m.target}: ${m.errors} transport errors (${m.timeouts} timeouts): ${m.errorSamples.join('; ')}`,
    );
  return problems;
}

/** The hello server as a real process, like the API. */
async function startHello(resources) {
  /** @type {import('@llmq/testing').ServiceProcess | undefined} */
  let service;
  const release = resources.add(
    'hello server',
    async () => service?.stop(),
    () => [service?.pid],
  );
  service = await testing.spawnService({
    name: 'bench-hello',
    command: process.execPath,
    args: [join(BENCH_DIR, 'servers', 'hello.mjs')],
    env: { PORT: '0' },
    ready: /listening on (http:\/\/\S+)/,
  });
  return { url: /listening on (http:\/\/\S+)/.exec(service.readyLine)[1], release };
}
