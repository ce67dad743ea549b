import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import { summarize } from './stats.mjs';
import { BENCH_DIR, testing } from './stack.mjs';

/**
 * The autocannon side of the benchmarks that compare an llmq route with the Express hello
 * route (accept, cache): the same generator, settings and bookkeeping for both sides.
 *
 * A target is `{ name, url, expectStatus, request, classify? }`: `request` is one autocannon
 * request; `classify(body)`, when given, names what each answer's body was (e.g. the cache layer
 * that answered), and those names are counted. Both sides of a comparison should classify, so
 * that the generator does the same work per answer on both.
 */

/** A warm-up (discarded), then the measured run; latency counts only the expected status. */
export async function measure(target, { connections, seconds, warmupSeconds }, log) {
  log(`${target.name}: ${warmupSeconds} s warm-up, then ${seconds} s at ${connections} connections`);
  const warmup = await load(target, connections, warmupSeconds);
  const run = await load(target, connections, seconds);
  return {
    ...run,
    warmup: {
      requests: warmup.requests,
      statuses: warmup.statuses,
      bodies: warmup.bodies,
      errors: warmup.errors,
    },
  };
}

async function load(target, connections, seconds) {
  const latencies = [];
  /** @type {Record<string, number>} */
  const statuses = {};
  /** @type {Record<string, number>} */
  const bodies = {};
  const errorSamples = new Set();
  const request = target.classify
    ? {
        ...target.request,
        onResponse: (_status, body) => {
          const kind = target.classify(body);
          bodies[kind] = (bodies[kind] ?? 0) + 1;
        },
      }
    : target.request;
  const started = performance.now();
  const instance = autocannon({
    url: target.url,
    connections,
    duration: seconds,
    timeout: 10,
    requests: [request],
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
    ...(target.classify ? { bodies } : {}),
    errors: result.errors,
    timeouts: result.timeouts,
    errorSamples: [...errorSamples],
  };
}

/**
 * No answer at all, answers with another status, transport errors, and (with `expectBody`)
 * answers whose body was classified as something else.
 */
export function loadProblems(m, expectBody) {
  const problems = [];
  const unexpected = m.requests - m.ok;
  if (m.ok === 0) problems.push(`${m.target}: no successful response`);
  if (unexpected > 0)
    problems.push(
      `${m.target}: ${unexpected} of ${m.requests} answers were not the expected status (${JSON.stringify(m.statuses)})`,
    );
  if (expectBody !== undefined) {
    const other = m.requests - (m.bodies?.[expectBody] ?? 0);
    if (other > 0)
      problems.push(
        `${m.target}: ${other} of ${m.requests} answers were not ${expectBody} (${JSON.stringify(m.bodies)})`,
      );
  }
  if (m.errors > 0)
    problems.push(
      `${m.target}: ${m.errors} transport errors (${m.timeouts} timeouts): ${m.errorSamples.join('; ')}`,
    );
  return problems;
}

/** The Express 5 hello server (`servers/hello.mjs`) as a real process, like the API. */
export async function startHello(resources) {
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

/** The reference target: `GET /hello`, whose body is `{"hello":"world"}`. */
export function helloTarget(url, { classify = false } = {}) {
  return {
    name: 'Express hello',
    url,
    expectStatus: 200,
    request: { method: 'GET', path: '/hello' },
    ...(classify ? { classify: (body) => (body.includes('"hello":"world"') ? 'hello' : 'other') } : {}),
  };
}
