import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Smoke test of the benchmark suite: it proves that `bench/run.mjs --quick` starts everything,
 * measures every figure against its reference and stops everything again. It never asserts
 * on the figures themselves: timing assertions on a shared 2-core machine would be flaky, and
 * benchmarks are not timed unit tests (DESIGN.md, "Performance is measured, not hoped").
 */
const RUN = resolve(__dirname, '..', 'run.mjs');
const RATIO = /(\d+\.\d+)x/;

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

let child: ChildProcess | undefined;
const dir = mkdtempSync(join(tmpdir(), 'llmq-bench-test-'));

afterAll(() => {
  if (child && child.exitCode === null) child.kill('SIGTERM'); // run.mjs stops its stack on SIGTERM
  rmSync(dir, { recursive: true, force: true });
});

function runQuick(out: string): Promise<Outcome> {
  return new Promise((resolvePromise, reject) => {
    child = spawn(process.execPath, [RUN, '--quick', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

function ratioOn(stdout: string, figure: string): number {
  const line = stdout.split('\n').find((l) => l.startsWith(figure));
  if (line === undefined) throw new Error(`no "${figure}" row in:\n${stdout}`);
  const match = RATIO.exec(line);
  if (!match) throw new Error(`no ratio on the "${figure}" row: ${line}`);
  return Number(match[1]);
}

describe('the benchmark suite in --quick mode', () => {
  it('runs every benchmark end to end, prints ratios and saves them as JSON', async () => {
    const out = join(dir, 'result.json');
    const { code, stdout, stderr } = await runQuick(out);
    if (code !== 0) throw new Error(`bench exited ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);

    for (const figure of [
      'accept throughput (req/s)',
      'accept latency p50 (ms)',
      'accept latency p99 (ms)',
      'time to first token p50 (ms)',
      'time to first token p99 (ms)',
      'request latency p50 (ms)',
      'request latency p99 (ms)',
      'request latency mean (ms)',
      'cache hit throughput (req/s)',
      'cache hit latency p50 (ms)',
      'cache hit latency p99 (ms)',
      'upstream calls per request',
      'workload answer time mean (ms)',
      'limiter admissions (calls/s)',
      'limiter admission latency p50 (ms)',
      'limiter admission latency p99 (ms)',
      'rag search throughput (queries/s)',
      'rag search latency p50 (ms)',
      'rag search latency p99 (ms)',
      'rag recall@10',
      'worker throughput, c=10 (jobs/s)',
      'worker throughput, c=100 (jobs/s)',
      'idle SSE stream, 100 open (heap bytes)',
      'idle SSE stream, 500 open (heap bytes)',
      'relayed tokens per second (tokens/s)',
    ]) {
      expect(ratioOn(stdout, figure)).toBeGreaterThan(0);
    }
    // A few hundred streams move RSS by whole pages and by V8 resizing its young generation, so the
    // RSS figure of a quick run may be anything, even below zero: the row only has to be there.
    expect(stdout).toMatch(/^idle SSE stream, 100 open \(RSS bytes\) .*x/m);
    expect(stdout).toMatch(/^idle SSE stream, 500 open \(RSS bytes\) .*x/m);
    // A router may rightly send the slow backend nothing: the ratio is then 0.
    expect(ratioOn(stdout, 'slow backend share (%)')).toBeGreaterThanOrEqual(0);
    expect(stdout).toContain(`saved ${out}`);

    const report = JSON.parse(readFileSync(out, 'utf8'));
    expect(report).toMatchObject({
      mode: 'quick',
      ok: true,
      machine: { cores: expect.any(Number), node: process.version },
    });
    const { accept, ttft, routing, cache, limiter, rag } = report.benchmarks;
    expect(accept.ok).toBe(true);
    expect(accept.llmq.statuses).toEqual({ '202': accept.llmq.requests });
    expect(accept.durability.jobRows).toBeGreaterThanOrEqual(accept.durability.accepted202);
    for (const value of Object.values(accept.ratios)) expect(value).toBeGreaterThan(0);
    expect(ttft.ok).toBe(true);
    expect(ttft.llmq.failed).toBe(0);
    expect(ttft.llmq.samples).toBe(ttft.settings.jobs);
    for (const value of Object.values(ttft.ratios)) expect(value).toBeGreaterThan(0);
    expect(typeof ttft.addedMs.p50).toBe('number');
    expect(typeof ttft.addedMs.p99).toBe('number');

    expect(routing.ok).toBe(true);
    for (const mode of [routing.p2c, routing.reference]) {
      expect(mode.failed).toBe(0);
      expect(mode.samples).toBe(routing.settings.requests);
      // Where the client says each request went is what each simulator counted.
      for (const backend of Object.values<{ served: number; simulatorRequests: number }>(mode.backends)) {
        expect(backend.simulatorRequests).toBe(backend.served);
      }
    }
    // Round-robin ignores speed: every backend gets the same share, whatever the timing.
    expect(routing.reference.slowSharePercent).toBeCloseTo(100 / routing.settings.backends.length, 2);
    for (const key of ['p50', 'p99', 'mean']) expect(routing.ratios[key]).toBeGreaterThan(0);

    expect(cache.ok).toBe(true);
    // Every hit was a 200 answered from Redis.
    expect(cache.hits.llmq.statuses).toEqual({ '200': cache.hits.llmq.requests });
    expect(cache.hits.llmq.bodies).toEqual({ redis: cache.hits.llmq.requests });
    expect(cache.hits.jobRows).toBeGreaterThanOrEqual(cache.hits.llmq.requests);
    const { workload } = cache;
    // Without the cache, one upstream call per request; with it, one per distinct prompt at least.
    expect(workload.reference.upstreamCalls).toBe(workload.requests);
    expect(workload.cached.upstreamCalls).toBeGreaterThanOrEqual(workload.distinctPrompts);
    expect(workload.cached.upstreamCalls).toBeLessThan(workload.requests);
    // The simulator's count and the job rows tell the same story.
    expect(workload.cached.queuedJobs.upstream).toBe(workload.cached.upstreamCalls);
    expect(workload.cached.answered).toBe(workload.requests);
    for (const value of Object.values(cache.ratios)) expect(value).toBeGreaterThan(0);

    expect(limiter.ok).toBe(true);
    // Every admission was admitted (the admitted path is what is measured) and no call failed.
    expect(Object.keys(limiter.llmq.decisions)).toEqual(['admitted']);
    expect(limiter.llmq.decisions.admitted).toBeGreaterThanOrEqual(limiter.llmq.calls);
    expect(limiter.llmq.errors + limiter.reference.errors).toBe(0);
    for (const value of Object.values(limiter.ratios)) expect(value).toBeGreaterThan(0);

    expect(rag.ok).toBe(true);
    // Every query answered both ways, every read through the replica, the index in the HNSW plan only.
    expect(rag.llmq.completed).toBe(rag.settings.queries * rag.settings.hnswRounds);
    expect(rag.reference.completed).toBe(rag.settings.queries);
    expect(rag.load.chunks).toBe(rag.settings.chunks);
    expect(rag.database.readsOnPrimary).toBe(0);
    expect(rag.plans.llmq.join(' ')).toMatch(/using chunks_p\d+_embedding_idx/);
    expect(rag.plans.reference.join(' ')).not.toMatch(/embedding_idx/);
    expect(rag.recall.queries).toBe(rag.settings.queries);
    for (const value of Object.values(rag.ratios)) expect(value).toBeGreaterThan(0);

    const { workers, relay } = report.benchmarks;
    const sse = report.benchmarks['sse-memory'];
    expect(workers.ok).toBe(true);
    expect(workers.levels.map((l: { concurrency: number }) => l.concurrency)).toEqual(
      workers.settings.concurrency,
    );
    for (const level of workers.levels) {
      // Every job of the backlog completed with one upstream call, and the window left out the
      // first and the last slot-full of completions.
      expect(level.statuses).toEqual({ completed: level.jobs });
      expect(level.upstreamCalls).toBe(level.jobs);
      expect(level.window.jobs).toBe(level.jobs - 2 * level.concurrency);
      expect(level.efficiency).toBeGreaterThan(0);
    }

    expect(sse.ok).toBe(true);
    // No worker ran, every stream stayed open until the client closed it, and each one cost heap.
    expect(sse.submitted.stillQueued).toBe(sse.submitted.jobs);
    for (const side of [sse.llmq, sse.reference]) {
      expect(side.closedByServer).toBe(0);
      expect(side.levels.map((l: { streams: number }) => l.streams)).toEqual(sse.settings.streams);
      for (const level of side.levels) expect(level.heapBytesPerStream).toBeGreaterThan(0);
    }

    expect(relay.ok).toBe(true);
    for (const side of [relay.llmq, relay.reference]) {
      expect(side.streams.failed).toBe(0);
      expect(side.streams.completed).toBeGreaterThan(0);
      expect(side.tokens).toBeGreaterThan(0);
      expect(side.tokens).toBeLessThanOrEqual(side.simulatorTokens);
    }
    // The simulator sends a chunk per token; the worker joins the tokens of each 10 ms into one event.
    expect(relay.reference.tokensPerEvent).toBe(1);
    expect(relay.llmq.tokensPerEvent).toBeGreaterThanOrEqual(1);
    expect(relay.ratios.throughput).toBeGreaterThan(0);
  }, 360_000);
});
