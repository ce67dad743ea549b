import { performance } from 'node:perf_hooks';
import { createAgent, requestJson, streamEvents } from '../lib/http.mjs';
import { runPool } from '../lib/pool.mjs';
import { ratio, summarize } from '../lib/stats.mjs';
import { serviceLogTail, simulatorEnv, startStack } from '../lib/stack.mjs';

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/**
 * Added time to first token: at a fixed number of concurrent clients, the time from sending
 * `POST /api/generate` to the first `token` event on the job's SSE stream, against the time
 * from sending the same request straight to the simulator to its first content chunk. Both
 * sides read their streams to the end, so each client holds one live stream at a time.
 *
 * @param {{ concurrency: number, jobs: number, warmupJobs: number, maxTokens: number, workers: number,
 *           workerConcurrency: number, simulator: { ttftMs: number, tokenMs: number, jitter: number } }} settings
 * @param {{ resources: import('../lib/resources.mjs').Resources, log: (m: string) => void, runId: string }} ctx
 */
export async function ttftBenchmark(settings, { resources, log, runId }) {
  const sim = settings.simulator;
  log(
    `ttft: starting an llmq stack with ${settings.workers} worker(s) (WORKER_CONCURRENCY=${settings.workerConcurrency})`,
  );
  const { stack, release } = await startStack(resources, 'ttft stack', {
    workers: settings.workers,
    workerEnv: { WORKER_CONCURRENCY: String(settings.workerConcurrency) },
    simulatorEnv: simulatorEnv(sim),
  });
  const agent = createAgent();
  try {
    const key = await stack.createKey('bench-ttft');
    const prompt = (side, i) => `bench ${runId} ttft ${side} #${i}: explain backpressure`;
    const direct = (i) =>
      directOnce({
        agent,
        simulatorUrl: stack.simulatorUrl,
        prompt: prompt('direct', i),
        maxTokens: settings.maxTokens,
      });
    const viaLlmq = (i) =>
      llmqOnce({
        agent,
        apiUrl: stack.apiUrl,
        key,
        prompt: prompt('llmq', i),
        maxTokens: settings.maxTokens,
      });

    log(`ttft: warm-up, ${settings.warmupJobs} streams each way`);
    await runPool(settings.warmupJobs, settings.concurrency, direct);
    await runPool(settings.warmupJobs, settings.concurrency, viaLlmq);

    log(`ttft: simulator direct, ${settings.jobs} streams at ${settings.concurrency} concurrent`);
    const directRun = await runPool(settings.jobs, settings.concurrency, direct);
    const before = await stack.simulatorStats();
    log(`ttft: through llmq, ${settings.jobs} jobs at ${settings.concurrency} concurrent`);
    const llmqRun = await runPool(settings.jobs, settings.concurrency, viaLlmq);
    const after = await stack.simulatorStats();

    const directTtft = summarize(directRun.samples.map((s) => s.ttftMs));
    const llmqTtft = summarize(llmqRun.samples.map((s) => s.ttftMs));
    const upstreamCalls = after.requests.chatStream - before.requests.chatStream;
    return {
      settings,
      direct: { ttftMs: directTtft, ...runFacts(directRun) },
      llmq: {
        ttftMs: llmqTtft,
        acceptMs: summarize(llmqRun.samples.map((s) => s.acceptMs)),
        // Where the added time goes: 202, then a worker starts the job, then the first token.
        toInProgressMs: summarize(llmqRun.samples.map((s) => s.inProgressMs).filter(Number.isFinite)),
        inProgressToFirstTokenMs: summarize(
          llmqRun.samples
            .filter((s) => Number.isFinite(s.inProgressMs))
            .map((s) => s.ttftMs - s.inProgressMs),
        ),
        upstreamCallsPerJob: upstreamCalls / settings.jobs,
        ...runFacts(llmqRun),
      },
      addedMs: { p50: llmqTtft.p50 - directTtft.p50, p99: llmqTtft.p99 - directTtft.p99 },
      ratios: { p50: ratio(llmqTtft.p50, directTtft.p50), p99: ratio(llmqTtft.p99, directTtft.p99) },
      serviceLogs: serviceLogTail(stack),
      problems: [...problemsOf('simulator direct', directRun), ...problemsOf('llmq', llmqRun)],
    };
  } finally {
    agent.destroy();
    await release();
  }
}

/** The simulator called as the worker calls it: same model, body shape and timings. */
async function directOnce({ agent, simulatorUrl, prompt, maxTokens }) {
  let first = null;
  let done = false;
  const t0 = performance.now();
  const result = await streamEvents({
    agent,
    method: 'POST',
    url: `${simulatorUrl}/v1/chat/completions`,
    body: {
      model: 'sim-small',
      messages: [{ role: 'user', content: prompt }],
      max_tokens: maxTokens,
      stream: true,
      stream_options: { include_usage: true },
    },
    onEvent: ({ data }) => {
      if (data === '[DONE]') {
        done = true;
        return;
      }
      if (first === null && JSON.parse(data).choices?.[0]?.delta?.content) first = performance.now();
    },
  });
  if (result.status !== 200) throw new Error(`simulator answered ${result.status}: ${result.text}`);
  if (first === null) throw new Error('the simulator stream had no content');
  if (!done) throw new Error('the simulator stream ended without [DONE]');
  return { ttftMs: first - t0 };
}

/** Submit, then open the stream right after the 202 and read it to its terminal event. */
async function llmqOnce({ agent, apiUrl, key, prompt, maxTokens }) {
  const auth = { authorization: `Bearer ${key}` };
  const t0 = performance.now();
  const accepted = await requestJson({
    agent,
    url: `${apiUrl}/api/generate`,
    headers: auth,
    body: { prompt, max_tokens: maxTokens },
  });
  const acceptedAt = performance.now();
  if (accepted.status !== 202)
    throw new Error(`POST /api/generate answered ${accepted.status}: ${accepted.text.slice(0, 300)}`);
  let first = null;
  let running = null;
  let terminal = null;
  let terminalData = '';
  const result = await streamEvents({
    agent,
    url: new URL(accepted.json.streamUrl, apiUrl).href,
    headers: auth,
    onEvent: ({ event, data }) => {
      if (event === 'token' && first === null) first = performance.now();
      if (event === 'status' && running === null && JSON.parse(data).status === 'in_progress')
        running = performance.now();
      if (TERMINAL.has(event)) {
        terminal = event;
        terminalData = data;
      }
    },
  });
  if (result.status !== 200) throw new Error(`GET stream answered ${result.status}: ${result.text}`);
  if (terminal !== 'completed')
    throw new Error(`the job ended ${terminal ?? 'without a terminal event'}: ${terminalData.slice(0, 300)}`);
  if (first === null) throw new Error('the job completed without a token event');
  return {
    ttftMs: first - t0,
    acceptMs: acceptedAt - t0,
    inProgressMs: running === null ? NaN : running - t0,
  };
}

function runFacts(run) {
  return {
    samples: run.samples.length,
    failed: run.errors.length,
    errorSamples: [...new Set(run.errors)].slice(0, 5),
    seconds: run.seconds,
    streamsPerSecond: run.samples.length / run.seconds,
  };
}

function problemsOf(name, run) {
  if (run.errors.length === 0) return [];
  return [
    `${name}: ${run.errors.length} of ${run.total} streams failed: ${[...new Set(run.errors)].slice(0, 3).join('; ')}`,
  ];
}
