import { createRequire } from 'node:module';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createAgent, requestJson } from '../lib/http.mjs';
import { runPool } from '../lib/pool.mjs';
import { ratio, summarize } from '../lib/stats.mjs';
import { REPO_ROOT, testing } from '../lib/stack.mjs';

const require = createRequire(import.meta.url);
/** @type {typeof import('@llmq/llm')} */
const llm = require('@llmq/llm');

const SIMULATOR = join(REPO_ROOT, 'apps', 'llm-simulator', 'dist', 'main.js');
const READY = /listening on (http:\/\/\S+)/;
const MODEL = 'sim-small';
/** The mode under test first, then the reference: both see the same simulators. */
const MODES = ['p2c-peak-ewma', 'round-robin'];

/**
 * Routing quality: the same closed-loop load (N callers, each with one request in flight)
 * through an `LlmClient` over three backends of one model, one of them five times slower,
 * once with its default routing (power of two choices on Peak-EWMA) and once with
 * round-robin, which ignores speed and so gives every backend the same share. Measured: the
 * share the slow backend received and the end-to-end request latency. Everything runs in this
 * process except the simulators, so the figures are the client's routing and nothing else.
 *
 * @param {{ callers: number, requests: number, warmupRequests: number, maxTokens: number,
 *           backends: { id: string, ttftMs: number, tokenMs: number, jitter: number }[],
 *           slowBackend: string, requestTimeoutMs: number }} settings
 * @param {{ resources: import('../lib/resources.mjs').Resources, log: (m: string) => void, runId: string }} ctx
 */
export async function routingBenchmark(settings, { resources, log, runId }) {
  log(
    `routing: starting ${settings.backends.length} simulators (${settings.backends
      .map((b) => `${b.id} ${b.ttftMs}+${b.tokenMs}/token ms`)
      .join(', ')})`,
  );
  const simulators = await startSimulators(resources, settings.backends);
  try {
    const registry = llm.buildRegistry(providersDocument(simulators), 'routing bench');
    /** @type {Record<string, Awaited<ReturnType<typeof runMode>>>} */
    const modes = {};
    for (const routing of MODES) {
      modes[routing] = await runMode({ routing, registry, simulators, settings, log, runId });
    }
    const [p2c, reference] = [modes['p2c-peak-ewma'], modes['round-robin']];
    return {
      settings,
      p2c,
      reference,
      // Round-robin's share is 1/n by construction; a router that knew each backend's speed and
      // had to use all of them at capacity would give each a share proportional to its speed.
      expectedShare: {
        roundRobinPercent: 100 / settings.backends.length,
        speedProportionalPercent: speedProportionalShare(settings),
      },
      ratios: {
        slowShare: ratio(p2c.slowSharePercent, reference.slowSharePercent),
        p50: ratio(p2c.latencyMs.p50, reference.latencyMs.p50),
        p99: ratio(p2c.latencyMs.p99, reference.latencyMs.p99),
        // p50 and p99 land on a fast and on a slow backend in both modes; the mean shows the shift.
        mean: ratio(p2c.latencyMs.mean, reference.latencyMs.mean),
      },
      serviceLogs: simulatorLogs(simulators),
      problems: [
        ...problemsOf('p2c-peak-ewma', p2c),
        ...problemsOf('round-robin', reference),
        ...notRoundRobin(reference),
      ],
    };
  } finally {
    await Promise.all(simulators.map((s) => s.release()));
  }
}

/**
 * One routing mode on a fresh client (no latency history): a warm-up, so that Peak-EWMA has
 * samples and the connection pools are open, then the simulators' counters are reset and the
 * measured requests run.
 */
async function runMode({ routing, registry, simulators, settings, log, runId }) {
  const client = new llm.LlmClient({ registry, secrets: () => undefined, routing });
  const agent = createAgent();
  try {
    const once = (phase) => (i) =>
      requestOnce(client, {
        prompt: `bench ${runId} routing ${routing} ${phase} #${i}: explain load balancing`,
        maxTokens: settings.maxTokens,
        timeoutMs: settings.requestTimeoutMs,
      });
    log(`routing: ${routing}: warm-up, ${settings.warmupRequests} requests at ${settings.callers} callers`);
    const warmup = await runPool(settings.warmupRequests, settings.callers, once('warm-up'));
    await Promise.all(simulators.map((s) => simulatorStats(agent, s, 'POST')));
    const estimatesAtStart = estimates(client);

    log(`routing: ${routing}: ${settings.requests} requests at ${settings.callers} callers`);
    const run = await runPool(settings.requests, settings.callers, once('measured'));
    const upstream = Object.fromEntries(
      await Promise.all(simulators.map(async (s) => [s.id, await simulatorStats(agent, s)])),
    );
    return summarizeMode({
      run,
      warmup,
      upstream,
      estimates: { atStartMs: estimatesAtStart, atEndMs: estimates(client) },
      settings,
    });
  } finally {
    agent.destroy();
    await client.close();
  }
}

/** One request, timed from the call to the promise resolving; a stuck one is aborted, not waited for. */
async function requestOnce(client, { prompt, maxTokens, timeoutMs }) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  const t0 = performance.now();
  try {
    const result = await client.stream({
      spec: {
        model: MODEL,
        messages: [{ role: 'user', content: prompt }],
        params: { max_tokens: maxTokens },
      },
      signal: controller.signal,
      onDelta: () => {},
    });
    return { ms: performance.now() - t0, backendId: result.backendId, attempts: result.attempts };
  } finally {
    clearTimeout(timer);
  }
}

/** Per backend: what the results say it served, what the simulator says it received, latency. */
function summarizeMode({ run, warmup, upstream, estimates, settings }) {
  const backends = {};
  for (const { id } of settings.backends) {
    const served = run.samples.filter((s) => s.backendId === id);
    const stats = upstream[id];
    backends[id] = {
      served: served.length,
      sharePercent: run.samples.length > 0 ? (100 * served.length) / run.samples.length : NaN,
      latencyMs: summarize(served.map((s) => s.ms)),
      simulatorRequests: stats.requests.chatStream,
      simulatorCompleted: stats.completed,
      simulatorAborted: stats.aborted,
      simulatorName: stats.name ?? null,
    };
  }
  return {
    samples: run.samples.length,
    failed: run.errors.length,
    errorSamples: [...new Set(run.errors)].slice(0, 5),
    warmupFailed: warmup.errors.length,
    attempts: run.samples.reduce((n, s) => n + s.attempts, 0),
    seconds: run.seconds,
    requestsPerSecond: run.samples.length / run.seconds,
    slowSharePercent: backends[settings.slowBackend].sharePercent,
    latencyMs: summarize(run.samples.map((s) => s.ms)),
    backends,
    // Peak-EWMA time to first token per backend, as the client saw it (round-robin keeps it too, unused).
    estimates,
  };
}

/** What one mode's figures cannot be trusted for: failures, and results the simulators disagree with. */
function problemsOf(name, mode) {
  const problems = [];
  if (mode.failed > 0) {
    problems.push(
      `${name}: ${mode.failed} of ${mode.samples + mode.failed} requests failed: ${mode.errorSamples.join('; ')}`,
    );
  }
  if (mode.warmupFailed > 0) problems.push(`${name}: ${mode.warmupFailed} warm-up requests failed`);
  if (mode.attempts !== mode.samples) {
    problems.push(
      `${name}: ${mode.attempts} upstream attempts for ${mode.samples} requests (retries happened)`,
    );
  }
  for (const [id, b] of Object.entries(mode.backends)) {
    // SIM_NAME is the backend id: a mismatch would mean the counts below belong to another backend.
    if (b.simulatorName !== null && b.simulatorName !== id) {
      problems.push(`${name}: backend ${id}'s URL answers as simulator "${b.simulatorName}"`);
    }
    if (b.simulatorRequests !== b.served || b.simulatorCompleted !== b.served) {
      problems.push(
        `${name}: backend ${id}: the client's results say ${b.served} requests, the simulator received ` +
          `${b.simulatorRequests} and completed ${b.simulatorCompleted}`,
      );
    }
  }
  return problems;
}

/**
 * Round-robin serves the backends in turn, so their counts differ by at most one. If they do not,
 * the reference is not round-robin: a `packages/llm/dist` built before the `routing` option
 * ignores it and routes by p2c both ways.
 */
function notRoundRobin(mode) {
  const counts = Object.values(mode.backends).map((b) => b.served);
  if (Math.max(...counts) - Math.min(...counts) <= 1) return [];
  return [
    `round-robin: the backends served ${counts.join(', ')} requests, not equal shares; ` +
      'is packages/llm/dist built with the routing option (npx turbo run build)?',
  ];
}

function estimates(client) {
  return Object.fromEntries([...client.backendStates()].map(([id, s]) => [id, s.latency.ms]));
}

/** The slow backend's share if each backend took work in proportion to its speed (1 / time per request). */
function speedProportionalShare({ backends, slowBackend, maxTokens }) {
  const speed = (b) => 1 / (b.ttftMs + b.tokenMs * maxTokens);
  const total = backends.reduce((s, b) => s + speed(b), 0);
  return (100 * speed(backends.find((b) => b.id === slowBackend))) / total;
}

function providersDocument(simulators) {
  return {
    backends: simulators.map((s) => ({
      id: s.id,
      kind: 'openai',
      baseUrl: `${s.url}/v1`,
      models: [MODEL],
      // Above the number of callers, so that concurrency never decides where a request goes.
      concurrency: 64,
      timeouts: { connectMs: 2000, firstTokenMs: 5000, idleMs: 5000, totalMs: 30_000 },
    })),
  };
}

/** The simulators as real processes, each registered so that it is stopped even if a later one fails. */
async function startSimulators(resources, backends) {
  return Promise.all(
    backends.map(async (b) => {
      /** @type {import('@llmq/testing').ServiceProcess | undefined} */
      let service;
      const release = resources.add(
        `simulator ${b.id}`,
        async () => service?.stop(),
        () => [service?.pid],
      );
      service = await testing.spawnService({
        name: `bench-sim-${b.id}`,
        command: process.execPath,
        args: [SIMULATOR],
        env: {
          SIM_PORT: '0',
          SIM_HOST: '127.0.0.1',
          SIM_NAME: b.id,
          SIM_TTFT_MS: String(b.ttftMs),
          SIM_TOKEN_MS: String(b.tokenMs),
          SIM_JITTER: String(b.jitter),
          SIM_FAULT: '',
        },
        ready: READY,
      });
      return { id: b.id, url: READY.exec(service.readyLine)[1], service, release };
    }),
  );
}

/** Anything a simulator printed besides its ready line (it logs nothing on the happy path). */
function simulatorLogs(simulators) {
  const logs = {};
  for (const { id, service } of simulators) {
    const lines = service
      .output()
      .split('\n')
      .filter((l) => l !== '' && l !== service.readyLine);
    if (lines.length > 0) logs[`simulator ${id}`] = { lines: lines.length, last: lines.slice(-5) };
  }
  return logs;
}

/** `GET /stats` (or `POST /stats/reset`) of one simulator: what it received, counted on its side. */
async function simulatorStats(agent, simulator, method = 'GET') {
  const url = `${simulator.url}/stats${method === 'POST' ? '/reset' : ''}`;
  const res = await requestJson({ agent, method, url, timeoutMs: 5000 });
  if (res.status !== 200 || res.json === null)
    throw new Error(`${method} ${url} answered ${res.status}: ${res.text}`);
  return res.json;
}
