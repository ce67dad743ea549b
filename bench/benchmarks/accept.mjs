import { helloTarget, loadProblems, measure, startHello } from '../lib/autocannon.mjs';
import { ratio } from '../lib/stats.mjs';
import { serviceLogTail, startStack } from '../lib/stack.mjs';

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

    const progress = (m) => log(`accept: ${m}`);
    const reference = await measure(helloTarget(hello.url), settings, progress);
    await hello.release();
    const llmq = await measure(llmqTarget, settings, progress);

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
      problems: [...loadProblems(reference), ...loadProblems(llmq)],
    };
  } finally {
    await hello.release();
    await release();
  }
}
