import http from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { submitJobs } from '../lib/generation.mjs';
import { createAgent, openIdleStream, requestJson, streamTracker } from '../lib/http.mjs';
import { isProbeLine, memoryAfterGc, probeNodeOptions } from '../lib/memory.mjs';
import { runPool } from '../lib/pool.mjs';
import { ensureOpenFiles } from '../lib/proc.mjs';
import { ratio } from '../lib/stats.mjs';
import { BENCH_DIR, serviceLogTail, startStack, testing } from '../lib/stack.mjs';

/** Files each process needs besides its streams (Redis, Postgres, the listening socket, modules). */
const SPARE_FILES = 512;

/**
 * Memory per idle SSE stream: the API's resident set and heap with N streams of queued jobs open
 * (0 workers: nothing is ever sent but the heartbeat), minus the same before any was open, over N;
 * next to the same for the cheapest Express 5 route holding an SSE stream open
 * (`servers/idle-sse.mjs`), in its own process. Both processes are read after full garbage
 * collections (`lib/gc-probe.cjs`), so a reading is what the streams hold, not the garbage their
 * requests left. The clients are in this process, never in a measured one.
 *
 * @param {{ streams: number[], warmupStreams: number, openConcurrency: number, submitConcurrency: number,
 *           settleMs: number, heartbeatMs: number, maxTokens: number }} settings
 * @param {{ resources: import('../lib/resources.mjs').Resources, log: (m: string) => void, runId: string }} ctx
 */
export async function sseMemoryBenchmark(settings, { resources, log, runId }) {
  const levels = [...settings.streams].sort((a, b) => a - b);
  const most = /** @type {number} */ (levels.at(-1));
  const files = ensureOpenFiles(most + SPARE_FILES, log);
  log('sse-memory: starting an llmq stack with 0 workers (its jobs stay queued) and the Express reference');
  const [{ stack, release }, reference] = await Promise.all([
    startStack(resources, 'sse-memory stack', {
      workers: 0,
      apiEnv: { NODE_OPTIONS: probeNodeOptions(), SSE_HEARTBEAT_MS: String(settings.heartbeatMs) },
    }),
    startIdleSse(resources, settings.heartbeatMs),
  ]);
  const agent = createAgent();
  // One connection per stream, never reused: a stream is its own client.
  const streamAgent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  try {
    const key = await stack.createKey('bench-sse-memory');
    log(`sse-memory: submitting ${most} jobs (they stay queued: no worker runs)`);
    const { jobs, seconds: submitSeconds } = await submitJobs({
      agent,
      apiUrl: stack.apiUrl,
      key,
      count: most,
      concurrency: settings.submitConcurrency,
      prompt: (i) => `bench ${runId} sse-memory #${i}: a long wait`,
      maxTokens: settings.maxTokens,
    });
    // A fresh API process, as the reference server is fresh: the submissions grew its heap, and the
    // pages V8 keeps after collecting would take the first streams without a byte more of RSS.
    log('sse-memory: restarting the API (the jobs stay queued in Postgres and Redis)');
    await stack.api.stop();
    await stack.startApi();

    const referenceSide = await measureSide(
      {
        name: 'Express reference',
        service: reference.service,
        url: () => `${reference.url}/stream`,
        headers: {},
        openCount: async () => (await get(agent, `${reference.url}/stats`)).json.open,
      },
      { levels, settings, streamAgent, log },
    );
    await reference.release();
    const llmqSide = await measureSide(
      {
        name: 'llmq',
        service: stack.api,
        url: (i) => `${stack.apiUrl}${/** @type {{ streamPath: string }} */ (jobs[i]).streamPath}`,
        headers: { authorization: `Bearer ${key}` },
        openCount: async () => sseGauge((await get(agent, `${stack.apiUrl}/metrics`)).text),
      },
      { levels, settings, streamAgent, log },
    );

    const perLevel = levels.map((streams, i) => {
      const [l, r] = [
        /** @type {Level} */ (llmqSide.levels[i]),
        /** @type {Level} */ (referenceSide.levels[i]),
      ];
      return {
        streams,
        llmq: l,
        reference: r,
        ratios: {
          rss: ratio(l.rssBytesPerStream, r.rssBytesPerStream),
          heap: ratio(l.heapBytesPerStream, r.heapBytesPerStream),
        },
      };
    });
    // From the first level to the last: what a stream adds once the heap's spare pages are taken.
    const marginal = (side) => {
      const [first, last] = [side.levels[0], side.levels.at(-1)];
      return first === last ? NaN : (last.rssBytes - first.rssBytes) / (last.streams - first.streams);
    };
    const { queued } = await jobStates(stack, 'bench-sse-memory');
    return {
      settings: { ...settings, openFilesLimit: files.soft, stackWorkers: 0 },
      submitted: { jobs: most, seconds: submitSeconds, stillQueued: queued },
      llmq: llmqSide,
      reference: referenceSide,
      levels: perLevel,
      marginalRssBytesPerStream: { llmq: marginal(llmqSide), reference: marginal(referenceSide) },
      serviceLogs: serviceLogTail(stack, 5, isProbeLine),
      problems: [
        ...sideProblems(llmqSide),
        ...sideProblems(referenceSide),
        ...(queued === most
          ? []
          : [`${most - queued} of the ${most} jobs left the queued state: a worker ran?`]),
      ],
    };
  } finally {
    agent.destroy();
    streamAgent.destroy();
    await reference.release();
    await release();
  }
}

/**
 * @typedef {{ streams: number, openSeconds: number, rssBytes: number, heapUsedBytes: number,
 *             rssBytesPerStream: number, heapBytesPerStream: number }} Level
 */

/**
 * One side: a warm-up (streams opened and closed, so first-use costs are paid), a reading, then
 * streams opened up to each level in turn with a reading at each, then all closed and a last reading.
 */
async function measureSide(side, { levels, settings, streamAgent, log }) {
  const tracker = streamTracker();
  /** @type {{ close: () => void }[]} */
  const open = [];
  const openUpTo = async (n) => {
    const from = open.length;
    const run = await runPool(n - from, settings.openConcurrency, async (i) => {
      open.push(
        await openIdleStream({ agent: streamAgent, url: side.url(from + i), headers: side.headers, tracker }),
      );
    });
    if (run.errors.length > 0)
      throw new Error(
        `${side.name}: ${run.errors.length} of ${n - from} streams did not open: ${[...new Set(run.errors)].slice(0, 3).join('; ')}`,
      );
    await waitForOpenCount(side, n);
    return run.seconds;
  };
  const closeAll = async () => {
    for (const s of open.splice(0)) s.close();
    await waitForOpenCount(side, 0);
  };

  log(`sse-memory: ${side.name}: warm-up, ${settings.warmupStreams} streams opened and closed`);
  await openUpTo(settings.warmupStreams);
  await closeAll();
  await sleep(settings.settleMs);
  const baseline = await memoryAfterGc(side.service);

  /** @type {Level[]} */
  const measured = [];
  for (const streams of levels) {
    log(`sse-memory: ${side.name}: opening streams up to ${streams}`);
    const started = performance.now();
    await openUpTo(streams);
    const openSeconds = (performance.now() - started) / 1000;
    await sleep(settings.settleMs);
    const m = await memoryAfterGc(side.service);
    measured.push({
      streams,
      openSeconds,
      rssBytes: m.rssBytes,
      heapUsedBytes: m.heapUsedBytes,
      rssBytesPerStream: (m.rssBytes - baseline.rssBytes) / streams,
      heapBytesPerStream: (m.heapUsedBytes - baseline.heapUsedBytes) / streams,
    });
  }
  const closedByServer = tracker.closedByServer;
  await closeAll();
  await sleep(settings.settleMs);
  const afterClose = await memoryAfterGc(side.service);
  return { name: side.name, baseline, levels: measured, afterClose, closedByServer };
}

/** Waits until the server itself counts `n` open streams. */
async function waitForOpenCount(side, n, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last = NaN;
  while (Date.now() < deadline) {
    last = await side.openCount();
    if (last === n) return;
    await sleep(50);
  }
  throw new Error(
    `${side.name}: the server counts ${last} open streams, ${n} expected after ${timeoutMs} ms`,
  );
}

function sideProblems(side) {
  const problems = [];
  if (side.closedByServer > 0)
    problems.push(
      `${side.name}: the server closed ${side.closedByServer} idle streams before the client did`,
    );
  // Only the heap: after a full GC it is exact, while RSS moves by whole pages and by V8 resizing its
  // young generation, so a few hundred streams may well leave it lower than before.
  for (const l of side.levels) {
    if (!(l.heapBytesPerStream > 0))
      problems.push(
        `${side.name}: ${l.streams} streams: the heap did not grow (${l.heapBytesPerStream} bytes a stream)`,
      );
  }
  return problems;
}

/** `llmq_sse_connections` from the API's Prometheus text. */
function sseGauge(text) {
  const match = /^llmq_sse_connections (\S+)$/m.exec(text);
  if (!match) throw new Error('no llmq_sse_connections on /metrics');
  return Number(match[1]);
}

async function jobStates(stack, tenant) {
  const { rows } = await stack.pool.query(
    "SELECT count(*) FILTER (WHERE status = 'queued')::int AS queued FROM jobs WHERE tenant_id = $1",
    [tenant],
  );
  return rows[0];
}

async function get(agent, url) {
  const res = await requestJson({ agent, method: 'GET', url });
  if (res.status !== 200) throw new Error(`GET ${url} answered ${res.status}: ${res.text.slice(0, 200)}`);
  return res;
}

/** The reference server (`servers/idle-sse.mjs`) with the GC probe, as a real process. */
async function startIdleSse(resources, heartbeatMs) {
  /** @type {import('@llmq/testing').ServiceProcess | undefined} */
  let service;
  const release = resources.add(
    'idle SSE reference server',
    async () => service?.stop(),
    () => [service?.pid],
  );
  service = await testing.spawnService({
    name: 'bench-idle-sse',
    command: process.execPath,
    args: [join(BENCH_DIR, 'servers', 'idle-sse.mjs')],
    env: { PORT: '0', SSE_HEARTBEAT_MS: String(heartbeatMs), NODE_OPTIONS: probeNodeOptions() },
    ready: /listening on (http:\/\/\S+)/,
  });
  return { service, url: /listening on (http:\/\/\S+)/.exec(service.readyLine)[1], release };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
