#!/usr/bin/env node
// `npm run bench [-- --quick] [-- --only <name>] [-- --out file.json]`
// Every figure is printed next to a reference measured in the same run, as a ratio; see README.md.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { acceptBenchmark } from './benchmarks/accept.mjs';
import { cacheBenchmark } from './benchmarks/cache.mjs';
import { limiterBenchmark } from './benchmarks/limiter.mjs';
import { ragBenchmark } from './benchmarks/rag.mjs';
import { relayBenchmark } from './benchmarks/relay.mjs';
import { routingBenchmark } from './benchmarks/routing.mjs';
import { sseMemoryBenchmark } from './benchmarks/sse-memory.mjs';
import { ttftBenchmark } from './benchmarks/ttft.mjs';
import { workersBenchmark } from './benchmarks/workers.mjs';
import { machineFacts } from './lib/machine.mjs';
import { formatReport, saveJson } from './lib/report.mjs';
import { Resources } from './lib/resources.mjs';
import { BENCH_DIR, REPO_ROOT } from './lib/stack.mjs';

const USAGE = `usage: node bench/run.mjs [--quick] [--only <name>] [--out <file.json>]
  --quick   a short smoke run (checks the suite works end to end; the figures are not meaningful)
  --only    run one benchmark: accept, ttft, routing, cache, limiter, rag, workers, sse-memory or relay
  --out     where to save the JSON (default bench/results/<ISO timestamp>.json)`;

const BENCHMARKS = {
  accept: acceptBenchmark,
  ttft: ttftBenchmark,
  routing: routingBenchmark,
  cache: cacheBenchmark,
  limiter: limiterBenchmark,
  rag: ragBenchmark,
  workers: workersBenchmark,
  'sse-memory': sseMemoryBenchmark,
  relay: relayBenchmark,
};

/** Full figures take about 8 minutes (4½ of them rag's); quick ones only prove the suite runs. */
function settingsFor(quick) {
  return {
    accept: {
      connections: 64,
      seconds: quick ? 2 : 10,
      warmupSeconds: quick ? 0.5 : 2,
      maxTokens: 16,
    },
    ttft: {
      concurrency: 50,
      jobs: quick ? 30 : 200,
      warmupJobs: quick ? 10 : 50,
      maxTokens: 16,
      workers: 1,
      workerConcurrency: 64,
      simulator: { ttftMs: 100, tokenMs: 10, jitter: 0 },
    },
    routing: {
      callers: 40,
      requests: quick ? 60 : 600,
      warmupRequests: quick ? 20 : 120,
      maxTokens: 16,
      requestTimeoutMs: 30_000,
      // Two backends at normal speed and one five times slower, all serving sim-small.
      backends: [
        { id: 'fast-1', ttftMs: 50, tokenMs: 5, jitter: 0.1 },
        { id: 'fast-2', ttftMs: 50, tokenMs: 5, jitter: 0.1 },
        { id: 'slow', ttftMs: 250, tokenMs: 25, jitter: 0.1 },
      ],
      slowBackend: 'slow',
    },
    cache: {
      maxTokens: 16,
      workers: 2,
      workerConcurrency: 16,
      // Fast, so the workload's unique requests finish quickly and its repeats mostly find them done.
      simulator: { ttftMs: 20, tokenMs: 2, jitter: 0 },
      // 16, not accept's 64: both servers are already saturated at 16 (the same req/s as at 64), and at
      // saturation latency is connections / throughput, so 64 would mostly add queueing to both sides.
      hits: { connections: 16, seconds: quick ? 2 : 10, warmupSeconds: quick ? 0.5 : 2 },
      workload: {
        requests: quick ? 40 : 400,
        warmupRequests: quick ? 10 : 40,
        repeatShare: 0.3,
        callers: 16,
        seed: 1,
      },
    },
    limiter: {
      // One API process: one connection, many requests admitting at once (ioredis pipelines them).
      inFlight: 64,
      seconds: quick ? 0.5 : 5,
      warmupSeconds: quick ? 0.25 : 1,
      // The API's default TENANT_MAX_ACTIVE_JOBS: a tenant's active set never holds more.
      admissionsPerTenant: 1000,
      tokens: 1000,
      costMicros: 500,
      // Every limit on (0 would skip its check), with room for every call. The buckets' bursts hold
      // all of a tenant's calls while their rates are low enough (1,000 requests and 1M tokens a
      // second) that the buckets keep their state between calls, as a busy key's do: at 1e9 a
      // minute they would be empty again within a microsecond and every call would find none.
      limits: {
        requestsPerMinute: 60_000,
        requestBurst: 1e9,
        tokensPerMinute: 6e7,
        tokenBurst: 1e12,
        dailyBudgetMicros: 1e15,
        monthlyBudgetMicros: 1e15,
        maxActiveJobs: 1e6,
      },
    },
    rag: {
      // 100k chunks of 384 dimensions in one tenant's collection. Quick mode takes 10k, not fewer: at
      // 5k chunks of this size the planner rightly prefers the exact scan, and the index goes unused.
      chunks: quick ? 10_000 : 100_000,
      chunksPerDocument: 20,
      dimensions: 384,
      // Clustered, as embeddings of real text are: about 200 chunks a cluster. Noise of norm 1 on
      // a unit centre puts a chunk at cosine ~0.7 to its centre and ~0.5 to its cluster's others.
      clusters: quick ? 50 : 500,
      noise: 1,
      // About 512 tokens, the default chunk size: with it a row outgrows 2 kB, so PostgreSQL stores
      // the vector out of line (TOAST), as it does for llmq's own chunks.
      contentChars: 2000,
      insertBatch: 2000,
      // Room for the whole HNSW graph while it is built (pgvector builds far slower once it spills).
      maintenanceWorkMem: '1GB',
      // An exact search of 100k such chunks takes about 0.7 s of PGlite's one thread: the 200 exact
      // queries are about 2½ minutes of the run's 4½ (the index build is most of the rest).
      queries: quick ? 50 : 200,
      // The HNSW side asks the same queries this many times over: 200 of them take well under a
      // second, too short a window to measure on a shared machine.
      hnswRounds: quick ? 1 : 10,
      warmupQueries: quick ? 8 : 16,
      callers: 8,
      k: 10,
      seed: 1,
    },
    workers: {
      // Worker slots (WORKER_CONCURRENCY) of the one worker process, one level after another.
      concurrency: quick ? [10, 100] : [10, 100, 500],
      // The backlog of each level, in jobs per slot: the first and the last slot-full of completions
      // are left out (the worker filling up and draining), so 3 leaves one round measured.
      jobsPerSlot: quick ? 3 : 5,
      maxTokens: 11,
      // A fixed upstream latency L: 1,500 ms to the first token, then 10 more 50 ms apart (2 s), so the
      // ideal is c / 2 s (Little's law): 5, 50 and 250 jobs/s.
      simulator: quick ? { ttftMs: 300, tokenMs: 20, jitter: 0 } : { ttftMs: 1500, tokenMs: 50, jitter: 0 },
      // L measured on the simulator directly: this many streams, this many at once.
      directSamples: quick ? 10 : 20,
      directConcurrency: 10,
      submitConcurrency: 32,
    },
    'sse-memory': {
      streams: quick ? [100, 500] : [1000, 5000],
      warmupStreams: quick ? 20 : 200,
      openConcurrency: 64,
      submitConcurrency: 32,
      // After the streams are open and before reading memory (llmq subscribes a job's events after its 200).
      settleMs: quick ? 200 : 1000,
      // llmq's default SSE_HEARTBEAT_MS, for both sides.
      heartbeatMs: 15_000,
      maxTokens: 16,
    },
    relay: {
      // SSE clients, each reading one stream at a time to its end, then starting the next job.
      clients: 50,
      seconds: quick ? 2 : 10,
      warmupJobs: quick ? 10 : 50,
      // Long streams, so that a job's own costs (submission, start, completion) weigh little next to its tokens.
      maxTokens: quick ? 200 : 1000,
      workers: 1,
      workerConcurrency: 64,
      // The worker's default: tokens arriving within 10 ms of the last event go out as one event.
      tokenCoalesceMs: 10,
      // A fast upstream: 1,000 tokens a second per stream.
      simulator: { ttftMs: 10, tokenMs: 1, jitter: 0 },
    },
  };
}

function parseCli() {
  try {
    const { values } = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        only: { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.only !== undefined && !(values.only in BENCHMARKS))
      throw new Error(`--only must be one of ${Object.keys(BENCHMARKS).join(', ')}`);
    return values;
  } catch (error) {
    console.error(`${error.message}\n${USAGE}`);
    process.exit(2);
  }
}

async function main() {
  const args = parseCli();
  if (args.help) {
    console.log(USAGE);
    return 0;
  }
  const log = (m) => process.stderr.write(`[bench] ${m}\n`);
  const resources = new Resources();
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      log(`${signal}: stopping everything the bench started`);
      void resources.stopAll().finally(() => process.exit(130));
    });
  }

  const startedAt = new Date();
  const runId = randomBytes(4).toString('hex');
  const settings = settingsFor(args.quick);
  const names = args.only ? [args.only] : Object.keys(BENCHMARKS);
  const report = {
    version: 1,
    mode: args.quick ? 'quick' : 'full',
    startedAt: startedAt.toISOString(),
    finishedAt: null,
    machine: await machineFacts(REPO_ROOT),
    benchmarks: {},
    ok: false,
  };

  for (const name of names) {
    const began = Date.now();
    try {
      const result = await BENCHMARKS[name](settings[name], { resources, log, runId });
      report.benchmarks[name] = { ok: result.problems.length === 0, ...result };
    } catch (error) {
      log(`${name} could not run: ${error?.stack ?? error}`);
      report.benchmarks[name] = {
        ok: false,
        settings: settings[name],
        error: String(error?.message ?? error),
      };
    } finally {
      await resources.stopAll();
    }
    log(`${name}: done in ${((Date.now() - began) / 1000).toFixed(1)} s`);
  }

  report.finishedAt = new Date().toISOString();
  report.ok = Object.values(report.benchmarks).every((b) => b.ok);
  const out = args.out ?? join(BENCH_DIR, 'results', `${isoBasic(startedAt)}.json`);
  saveJson(out, report);
  console.log(formatReport(report));
  console.log(`\nsaved ${out}`);
  return report.ok ? 0 : 1;
}

/** ISO 8601 basic format (20250101T120000Z): sorts by time and has no ':' for other filesystems. */
function isoBasic(date) {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
