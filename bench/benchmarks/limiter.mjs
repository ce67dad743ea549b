import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ratio, summarize } from '../lib/stats.mjs';

const require = createRequire(import.meta.url);
/** @type {typeof import('@llmq/embedded')} */
const embedded = require('@llmq/embedded');
/** @type {typeof import('@llmq/queue')} */
const queue = require('@llmq/queue');
/** @type {typeof import('@llmq/rate-limit')} */
const rateLimit = require('@llmq/rate-limit');

const PREFIX = 'bench';
const KEY_ID = 'bench-key';
/** The one key the reference reads (a short JSON string). */
const GET_KEY = `${PREFIX}:limiter:get`;

/**
 * The admission cost of the per-key rate limiter: `KeyLimiter.admit` (one Lua call,
 * `lua/admit-8.lua`, that checks and charges the key's request and token buckets, its daily and
 * monthly budgets and the tenant's active-job set) from this one process over one ioredis
 * connection with the API's options, as one API process admits, next to a plain `GET` of one key
 * on the same connection at the same number of calls in flight. Both sides run against a
 * redis-server started for the benchmark with the stack's settings (AOF, `noeviction`).
 *
 * Every limit is on, with values so high that every call is admitted: a rejection is cheaper (it
 * charges nothing), so the admitted path is the one measured. A tenant takes 1,000 admissions
 * (the API's default `TENANT_MAX_ACTIVE_JOBS`: its active set never holds more), then the next
 * tenant takes over and the previous one's keys are unlinked, so Redis memory stays bounded.
 * Nothing is settled: settlement is the worker's cost, not the API's.
 *
 * @param {{ inFlight: number, seconds: number, warmupSeconds: number, admissionsPerTenant: number,
 *           tokens: number, costMicros: number,
 *           limits: import('@llmq/rate-limit').EffectiveLimits }} settings
 * @param {{ resources: import('../lib/resources.mjs').Resources, log: (m: string) => void, runId: string }} ctx
 */
export async function limiterBenchmark(settings, { resources, log, runId }) {
  log('limiter: starting a redis-server');
  const { server, release } = await startRedis(resources);
  const redis = queue.createRedis(server.url, 'edge', 'llmq-bench-limiter');
  try {
    if (!(await queue.waitUntilReady(redis, 5_000))) throw new Error(`no connection to ${server.url}`);
    const limiter = new rateLimit.KeyLimiter(redis, { prefix: PREFIX });
    await redis.set(GET_KEY, JSON.stringify({ jobId: randomUUID(), status: 'completed', runId }));
    const memoryBefore = await usedMemory(redis);

    const progress = (m) => log(`limiter: ${m}`);
    const reference = await measure(
      { name: 'GET', call: () => redis.get(GET_KEY), command: 'get' },
      { redis, settings, log: progress },
    );
    const admissions = admitter({ redis, limiter, settings, runId });
    const llmq = await measure(
      { name: 'KeyLimiter.admit', call: admissions.admit, command: 'evalsha' },
      { redis, settings, log: progress },
    );
    await admissions.flush();
    return {
      settings,
      redis: {
        version: await redisVersion(redis),
        usedMemoryBefore: memoryBefore,
        usedMemoryAfter: await usedMemory(redis),
      },
      reference,
      // Decisions and tenants count the warm-up's admissions too.
      llmq: { ...llmq, decisions: admissions.decisions, tenants: admissions.tenants() },
      ratios: {
        throughput: ratio(llmq.perSecond, reference.perSecond),
        p50: ratio(llmq.latencyMs.p50, reference.latencyMs.p50),
        p99: ratio(llmq.latencyMs.p99, reference.latencyMs.p99),
      },
      problems: [
        ...callProblems(reference),
        ...callProblems(llmq),
        ...decisionProblems(admissions.decisions),
        ...admissions.unlinkErrors.slice(0, 3),
      ],
    };
  } finally {
    redis.disconnect();
    await release();
  }
}

/** A redis-server with the stack's settings in a fresh directory, removed with it. */
async function startRedis(resources) {
  const dataDir = mkdtempSync(join(tmpdir(), 'llmq-bench-redis-'));
  /** @type {import('@llmq/embedded').RedisServerHandle | undefined} */
  let server;
  const release = resources.add(
    'limiter redis',
    async () => {
      await server?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
    () => [server?.pid],
  );
  server = await embedded.startRedisServer({ dataDir, port: await embedded.freePort() });
  return { server, release };
}

/**
 * Admissions with a distinct job id each, `admissionsPerTenant` to a tenant. When a tenant is
 * done, its keys are unlinked: the UNLINK goes out on the same connection after every admission
 * of that tenant was sent (an admission's Lua call is sent when `admit` is called), so Redis runs
 * it after them. One UNLINK per tenant is part of the measured load (0.1 % of the calls).
 */
function admitter({ redis, limiter, settings, runId }) {
  const { limits, tokens, costMicros, admissionsPerTenant } = settings;
  /** @type {Record<string, number>} */
  const decisions = {};
  const unlinkErrors = [];
  let n = 0;
  const tenantOf = (i) => `bench-${runId}-${i}`;
  const unlinkTenant = (tenantId) => {
    const { day, month } = rateLimit.budgetWindows(new Date());
    const k = rateLimit.limiterKeys;
    return redis
      .unlink(
        k.requests(PREFIX, tenantId, KEY_ID),
        k.tokens(PREFIX, tenantId, KEY_ID),
        k.spendDay(PREFIX, tenantId, KEY_ID, day),
        k.spendMonth(PREFIX, tenantId, KEY_ID, month),
        k.active(PREFIX, tenantId),
        k.reservations(PREFIX, tenantId),
      )
      .catch((error) => {
        unlinkErrors.push(`UNLINK ${tenantId}: ${error?.message ?? error}`);
      });
  };
  return {
    decisions,
    unlinkErrors,
    tenants: () => Math.ceil(n / admissionsPerTenant),
    async admit() {
      const i = n++;
      const tenant = Math.floor(i / admissionsPerTenant);
      if (i > 0 && i % admissionsPerTenant === 0) void unlinkTenant(tenantOf(tenant - 1));
      const decision = await limiter.admit({
        tenantId: tenantOf(tenant),
        keyId: KEY_ID,
        jobId: randomUUID(),
        tokens,
        costMicros,
        limits,
      });
      const kind = decision.admitted ? 'admitted' : decision.reason;
      decisions[kind] = (decisions[kind] ?? 0) + 1;
    },
    /** Unlinks the last tenant's keys too, so the memory figure after the run is what is left over. */
    flush: () => unlinkTenant(tenantOf(Math.floor(Math.max(0, n - 1) / admissionsPerTenant))),
  };
}

/**
 * A warm-up (discarded), then the measured run: `inFlight` callers on the one connection, each
 * starting its next call when one ends (ioredis pipelines whatever is in flight). Besides the
 * client-side figures, Redis' own time per command (INFO commandstats, reset after the warm-up)
 * and the CPU both processes used, per call.
 */
async function measure(target, { redis, settings, log }) {
  log(
    `${target.name}: ${settings.warmupSeconds} s warm-up, then ${settings.seconds} s at ${settings.inFlight} calls in flight`,
  );
  const warmup = await closedLoop(target.call, settings.inFlight, settings.warmupSeconds);
  await redis.config('RESETSTAT');
  const redisCpuBefore = await redisCpuSeconds(redis);
  const clientCpuBefore = process.cpuUsage();
  const run = await closedLoop(target.call, settings.inFlight, settings.seconds);
  const clientCpu = process.cpuUsage(clientCpuBefore);
  const redisCpu = (await redisCpuSeconds(redis)) - redisCpuBefore;
  const server = await commandStats(redis, target.command);
  return {
    target: target.name,
    ...run,
    warmup: { calls: warmup.calls, errors: warmup.errors },
    redisUsecPerCall: server.usecPerCall,
    redisCommandCalls: server.calls,
    cpuUsecPerCall: {
      redis: run.calls > 0 ? (redisCpu * 1e6) / run.calls : NaN,
      client: run.calls > 0 ? (clientCpu.user + clientCpu.system) / run.calls : NaN,
    },
  };
}

async function closedLoop(call, inFlight, seconds) {
  const latencies = [];
  const errorSamples = new Set();
  let errors = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          await call();
          latencies.push(performance.now() - t0);
        } catch (error) {
          errors += 1;
          if (errorSamples.size < 5) errorSamples.add(String(error?.message ?? error));
        }
      }
    }),
  );
  // The calls still in flight at the deadline finish, and count, inside the elapsed time.
  const elapsedSeconds = (performance.now() - started) / 1000;
  return {
    seconds: elapsedSeconds,
    calls: latencies.length,
    perSecond: latencies.length / elapsedSeconds,
    latencyMs: summarize(latencies),
    errors,
    errorSamples: [...errorSamples],
  };
}

async function redisCpuSeconds(redis) {
  const info = await redis.info('cpu');
  const field = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** `cmdstat_<command>:calls=…,usec=…,usec_per_call=…` from INFO commandstats. */
async function commandStats(redis, command) {
  const info = await redis.info('commandstats');
  const line = new RegExp(`^cmdstat_${command}:(.*)$`, 'm').exec(info)?.[1] ?? '';
  const field = (name) => Number(new RegExp(`(?:^|,)${name}=([\\d.]+)`).exec(line)?.[1] ?? NaN);
  return { calls: field('calls'), usecPerCall: field('usec_per_call') };
}

async function usedMemory(redis) {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? NaN);
}

async function redisVersion(redis) {
  const info = await redis.info('server');
  return /^redis_version:(\S+)/m.exec(info)?.[1] ?? 'unknown';
}

function callProblems(m) {
  const problems = [];
  if (m.calls === 0) problems.push(`${m.target}: no call completed`);
  if (m.errors > 0) problems.push(`${m.target}: ${m.errors} calls failed: ${m.errorSamples.join('; ')}`);
  if (m.warmup.errors > 0) problems.push(`${m.target}: ${m.warmup.errors} warm-up calls failed`);
  return problems;
}

/** The limits are set so high that anything but an admission means the benchmark measured the wrong path. */
function decisionProblems(decisions) {
  const rejected = Object.entries(decisions).filter(([kind]) => kind !== 'admitted');
  return rejected.length === 0
    ? []
    : [
        `KeyLimiter.admit: calls were rejected, so the admitted path was not all that was measured: ${JSON.stringify(decisions)}`,
      ];
}
