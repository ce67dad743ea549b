import { performance } from 'node:perf_hooks';
import { directCompletion, llmqCompletion } from '../lib/generation.mjs';
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

/**
 * Tokens relayed to SSE clients per API process: for a fixed time, N clients each submit a job and
 * read its SSE stream to `completed`, then the next, so N jobs stream at once from a fast simulator;
 * the tokens are counted as their `token` events arrive (and checked against the `completed` usage
 * of every stream read to its end). The reference is the same clients for the same time reading
 * streams of the same length straight from the simulator (`/v1/chat/completions`, `stream: true`),
 * as the worker reads them. Everything shares the machine's cores, so the CPU
 * each process used is measured too: the API's share of a core says how far one API process is
 * from its own limit.
 *
 * @param {{ clients: number, seconds: number, warmupJobs: number, maxTokens: number, workers: number,
 *           workerConcurrency: number, tokenCoalesceMs: number,
 *           simulator: { ttftMs: number, tokenMs: number, jitter: number } }} settings
 * @param {{ resources: import('../lib/resources.mjs').Resources, log: (m: string) => void, runId: string }} ctx
 */
export async function relayBenchmark(settings, { resources, log, runId }) {
  log(
    `relay: starting an llmq stack with ${settings.workers} worker(s) (WORKER_CONCURRENCY=${settings.workerConcurrency}, ` +
      `TOKEN_COALESCE_MS=${settings.tokenCoalesceMs})`,
  );
  const { stack, release } = await startStack(resources, 'relay stack', {
    workers: settings.workers,
    workerEnv: {
      ...WORKER_DEFAULT_TIMERS,
      WORKER_CONCURRENCY: String(settings.workerConcurrency),
      TOKEN_COALESCE_MS: String(settings.tokenCoalesceMs),
    },
    simulatorEnv: simulatorEnv(settings.simulator),
    providers: providersWithConcurrency(settings.workerConcurrency),
  });
  const agent = createAgent();
  try {
    const key = await stack.createKey('bench-relay');
    const prompt = (side, i) => `bench ${runId} relay ${side} #${i}: tell a long story`;
    const direct = (i, window) =>
      directCompletion({
        agent,
        simulatorUrl: stack.simulatorUrl,
        prompt: prompt('direct', i),
        maxTokens: settings.maxTokens,
        ...window,
      });
    const viaLlmq = (i, window) =>
      llmqCompletion({
        agent,
        apiUrl: stack.apiUrl,
        key,
        prompt: prompt('llmq', i),
        maxTokens: settings.maxTokens,
        ...window,
      });

    // Whole streams (none dropped), so no job of the warm-up is still running when llmq is measured.
    log(`relay: warm-up, ${settings.warmupJobs} streams each way`);
    for (const [name, once] of [
      ['simulator direct', direct],
      ['llmq', viaLlmq],
    ]) {
      const warmup = await runPool(settings.warmupJobs, settings.clients, (i) => once(`warm-up ${i}`));
      if (warmup.errors.length > 0) throw new Error(`${name} warm-up: ${warmup.errors[0]}`);
    }

    const pids = {
      api: stack.api.pid,
      ...Object.fromEntries(stack.workers.map((w, i) => [`worker${i + 1}`, w.pid])),
      simulator: stack.simulator.pid,
      redis: stack.redis.pid,
      pglite: stack.pglite.pid,
    };
    log(`relay: simulator direct, ${settings.clients} clients for ${settings.seconds} s`);
    const reference = await measure(stack, pids, settings, direct);
    log(`relay: through llmq, ${settings.clients} clients for ${settings.seconds} s`);
    const llmq = await measure(stack, pids, settings, viaLlmq);

    const apiShare = llmq.cpu.coreShare.api;
    return {
      settings: { ...settings, workerEnv: WORKER_DEFAULT_TIMERS },
      reference,
      llmq: {
        ...llmq,
        apiCpuMsPerThousandTokens: (1000 * 1000 * llmq.cpu.cpuSeconds.api) / llmq.tokens,
        // What one API process would relay with a core of its own, if nothing else limited it.
        apiCeilingTokensPerSecond: llmq.tokensPerSecond / apiShare,
      },
      ratios: { throughput: ratio(llmq.tokensPerSecond, reference.tokensPerSecond) },
      serviceLogs: serviceLogTail(stack),
      problems: [...runProblems('simulator direct', reference), ...runProblems('llmq', llmq)],
    };
  } finally {
    agent.destroy();
    await release();
  }
}

/**
 * One side's measured run: every client starts a stream, reads it to its end and starts the next,
 * for `seconds`; the tokens are counted as they arrive (the streams open at the end are dropped at
 * their next event, and what arrives after the window is not counted). Also what the simulator
 * counted and the CPU every process used meanwhile.
 */
async function measure(stack, pids, settings, once) {
  const before = await stack.simulatorStats();
  const cpu = cpuMeter(pids);
  const started = performance.now();
  const stopAt = started + settings.seconds * 1000;
  let tokens = 0;
  let next = 0;
  const streams = [];
  const errors = [];
  await Promise.all(
    Array.from({ length: settings.clients }, async () => {
      while (performance.now() < stopAt) {
        try {
          streams.push(await once(next++, { stopAt, onTokens: (n) => (tokens += n) }));
        } catch (error) {
          errors.push(String(error?.message ?? error));
        }
      }
    }),
  );
  const usage = cpu.stop();
  const after = await stack.simulatorStats();
  const completed = streams.filter((s) => s.completed);
  const tokenEvents = streams.reduce((sum, s) => sum + s.tokenEvents, 0);
  return {
    seconds: settings.seconds,
    tokens,
    tokensPerSecond: tokens / settings.seconds,
    streams: {
      completed: completed.length,
      droppedAtTheEnd: streams.length - completed.length,
      failed: errors.length,
    },
    errorSamples: [...new Set(errors)].slice(0, 5),
    tokenEvents,
    tokensPerEvent: streams.reduce((sum, s) => sum + s.tokens, 0) / tokenEvents,
    // Written, not necessarily read: a dropped stream's last tokens may not have been read.
    simulatorTokens: after.tokens - before.tokens,
    upstreamCalls: after.requests.chatStream - before.requests.chatStream,
    completedStreamMs: summarize(completed.map((s) => s.ms)),
    cpu: usage,
  };
}

function runProblems(name, m) {
  const problems = [];
  if (m.streams.failed > 0)
    problems.push(`${name}: ${m.streams.failed} streams failed: ${m.errorSamples.slice(0, 3).join('; ')}`);
  if (m.streams.completed === 0) problems.push(`${name}: no stream completed within ${m.seconds} s`);
  if (m.simulatorTokens < m.tokens)
    problems.push(
      `${name}: the clients counted ${m.tokens} tokens, the simulator wrote only ${m.simulatorTokens}`,
    );
  const started = m.streams.completed + m.streams.droppedAtTheEnd + m.streams.failed;
  if (m.upstreamCalls !== started)
    problems.push(`${name}: ${m.upstreamCalls} upstream calls for ${started} streams`);
  return problems;
}
