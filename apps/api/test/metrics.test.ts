/**
 * Metrics, the scaling report and readiness, end to end: real API and worker processes, and a
 * real Prometheus (Debian's `prometheus` package; `npm test` installs it as root) scraping both
 * every second. The stack starts with no worker, so submitted jobs wait until the test starts one.
 */
import { request as httpRequest, type ClientRequest } from 'node:http';
import {
  PrometheusServer,
  eventually,
  promtoolCheckMetrics,
  useStack,
  type ServiceProcess,
} from '@llmq/testing';

const ADMIN = 'admin-token-for-metrics-tests';
const METRICS_TOKEN = 'metrics-token-for-metrics-tests';
/** In every prompt and a 404's URL: it must never reach a metric. */
const MARKER = 'zebra-quartz-7731';
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

const { stack, keys } = useStack({
  workers: 0,
  apiEnv: { ADMIN_TOKEN: ADMIN, SCALE_UP_QUEUE_PRESSURE: '2' },
  // Slow enough that a queue of jobs takes a few seconds to drain through one slot.
  simulatorEnv: { SIM_TTFT_MS: '100', SIM_TOKEN_MS: '25' },
});
let prometheus: PrometheusServer;
let worker: ServiceProcess;
let workerMetrics = '';

beforeAll(async () => {
  prometheus = await PrometheusServer.start({ 'llmq-api': [new URL(stack.apiUrl).host] });
}, 60_000);

afterAll(async () => {
  await prometheus?.stop();
});

interface ScalingReport {
  queue: { waiting: number; active: number; delayed: number; completed: number; failed: number };
  workers: number;
  scaling: {
    queuePressure: number;
    failureRate: number;
    shouldScaleUp: boolean;
    shouldScaleDown: boolean;
    advice: string;
    reason: string;
  };
  queues: Array<{ name: string; waiting: number; workers: number }>;
}

async function scaling(token = keys.acme!): Promise<ScalingReport> {
  const res = await stack.request('/api/metrics/scaling', token);
  expect(res.status).toBe(200);
  return (await res.json()) as ScalingReport;
}

/** The one value of an instant query, once it exists and passes `ok`. */
function promValue(query: string, ok: (v: number) => boolean, timeoutMs = 20_000): Promise<number> {
  let last = 'no series';
  return eventually(
    async () => {
      const result = await prometheus.query(query);
      last = JSON.stringify(result);
      const v = result[0]?.value;
      return result.length === 1 && v !== undefined && ok(v) ? v : undefined;
    },
    () => `Prometheus answered ${query} with ${last}\n${prometheus.output()}`,
    timeoutMs,
  );
}

const submit = (prompt: string, extra: object = {}, key = keys.acme!) =>
  stack.submit(key, { prompt: `${prompt} ${MARKER}`, max_tokens: 16, ...extra });

describe('the scaling report', () => {
  it('needs an API key or the admin token', async () => {
    expect((await stack.request('/api/metrics/scaling', null)).status).toBe(401);
    expect((await stack.request('/api/metrics/scaling', 'llmq_not-a-key')).status).toBe(401);
    expect((await scaling(ADMIN)).workers).toBe(0);
  });

  it('advises hold on an idle fleet, then scale_up as jobs wait with no worker', async () => {
    const idle = await scaling();
    expect(idle).toMatchObject({
      queue: { waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0 },
      workers: 0,
      scaling: {
        queuePressure: 0,
        failureRate: 0,
        shouldScaleUp: false,
        shouldScaleDown: false,
        advice: 'hold',
      },
    });
    expect(idle.queues.map((q) => q.name)).toEqual(['generate', 'generate-batch', 'ingest']);

    for (let i = 0; i < 6; i++) expect((await submit(`queued job ${i}`)).res.status).toBe(202);
    const full = await eventually(async () => {
      const r = await scaling();
      return r.queue.waiting === 6 ? r : undefined;
    }, 'the report counts 6 waiting jobs');
    expect(full.scaling).toMatchObject({
      advice: 'scale_up',
      shouldScaleUp: true,
      queuePressure: 6,
      reason: '6 jobs wait and no worker consumes them',
    });
  });

  it('Prometheus scrapes the queue depth from the API', async () => {
    await promValue('llmq_queue_jobs{queue="generate",state="waiting"}', (v) => v === 6);
    await promValue('up{job="llmq-api"}', (v) => v === 1);
  });

  it('turns to scale_down once a worker has drained the queue, and Prometheus sees the worker', async () => {
    worker = await stack.startWorker({ WORKER_CONCURRENCY: '1' });
    const line = /llmq-worker metrics on (http:\/\/\S+)\/metrics/.exec(worker.output());
    expect(line).not.toBeNull();
    workerMetrics = line![1]!;
    prometheus.retarget({
      'llmq-api': [new URL(stack.apiUrl).host],
      'llmq-worker': [new URL(workerMetrics).host],
    });

    const drained = await eventually(
      async () => {
        const r = await scaling();
        return r.scaling.advice === 'scale_down' ? r : undefined;
      },
      'the advice turns to scale_down',
      30_000,
    );
    expect(drained).toMatchObject({
      queue: { waiting: 0, completed: 6, failed: 0 },
      workers: 1,
      scaling: { queuePressure: 0, failureRate: 0, shouldScaleDown: true },
    });
    expect(drained.queues.find((q) => q.name === 'generate')?.workers).toBe(1);

    await promValue('up{job="llmq-worker"}', (v) => v === 1);
    await promValue('llmq_queue_jobs{queue="generate",state="waiting"}', (v) => v === 0);
    await promValue('sum(llmq_job_duration_seconds_count{outcome="completed"})', (v) => v === 6);
    // They waited for a worker: queue wait is what the autoscaler would have cut.
    await promValue('llmq_job_queue_wait_seconds_sum{queue="generate"}', (v) => v > 1);
  });
});

describe('the metrics endpoints', () => {
  it('pass promtool, carry the expected series, and no label holds a job id or prompt text', async () => {
    // Traffic for the remaining series: a cache hit, a rate-limit refusal, a poll, a 404.
    const first = await submit('cached question', { temperature: 0 });
    await stack.waitForJob(keys.acme!, first.body.jobId);
    const hit = await submit('cached question', { temperature: 0 });
    expect(hit.res.status).toBe(200);
    const limited = await stack.createKey('limited', { requestsPerMinute: 1 });
    expect((await submit('one', {}, limited)).res.status).toBe(202);
    expect((await submit('two', {}, limited)).res.status).toBe(429);
    expect((await stack.request(`/api/jobs/${first.body.jobId}`, keys.acme!)).status).toBe(200);
    expect((await stack.request(`/no-such-route-${MARKER}/${first.body.jobId}`, null)).status).toBe(404);

    const api = await (await fetch(`${stack.apiUrl}/metrics`)).text();
    const wrk = await eventually(async () => {
      const text = await (await fetch(`${workerMetrics}/metrics`)).text();
      return /llmq_tokens_total\{model="sim-small",type="output"\} [1-9]/.test(text) ? text : undefined;
    }, "the worker counted the tokens of the limited key's job");

    for (const [name, text] of [
      ['api', api],
      ['worker', wrk],
    ] as const) {
      const check = await promtoolCheckMetrics(text);
      expect({ endpoint: name, ok: check.ok, output: check.output }).toEqual({
        endpoint: name,
        ok: true,
        output: '',
      });
      expect(text).not.toMatch(UUID);
      expect(text).not.toContain(MARKER);
      expect(text).not.toMatch(/\b(job_?id|tenant|prompt|api_?key)="/i);
    }
    for (const series of [
      'llmq_http_requests_total{route="/api/generate",method="POST",status="202"}',
      'llmq_http_requests_total{route="/api/jobs/:id",method="GET",status="200"}',
      'llmq_http_requests_total{route="unmatched",method="GET",status="404"}',
      'llmq_http_request_duration_seconds_bucket{le="0.005",route="/api/metrics/scaling",method="GET"}',
      'llmq_cache_hits_total{layer="redis"} 1',
      'llmq_cache_misses_total 1',
      'llmq_rate_limit_rejections_total{reason="requests"} 1',
      'llmq_queue_jobs{queue="generate",state="completed"}',
      'llmq_queue_jobs{queue="ingest",state="waiting"} 0',
      'llmq_sse_connections 0',
      'nodejs_eventloop_lag_seconds',
    ]) {
      expect(api).toContain(series);
    }
    for (const series of [
      'llmq_upstream_attempts_total{backend="sim-1",model="sim-small"}',
      'llmq_upstream_breaker_state{backend="sim-1"} 0',
      'llmq_upstream_request_duration_seconds_count{backend="sim-1",model="sim-small"}',
      'llmq_job_time_to_first_token_seconds_count{queue="generate",model="sim-small"}',
      'llmq_job_queue_wait_seconds_count{queue="generate"}',
      'llmq_cost_usd_total{model="sim-small"}',
      'llmq_tokens_total{model="sim-small",type="input"}',
      'process_cpu_seconds_total',
    ]) {
      expect(wrk).toContain(series);
    }
    expect(await (await fetch(`${workerMetrics}/health`)).json()).toEqual({ status: 'ok' });
  });
});

describe('an API with a metrics token, a limit on active requests and a drain delay', () => {
  let extra: { url: string; process: ServiceProcess };
  beforeAll(async () => {
    extra = await stack.startExtraApi({
      METRICS_TOKEN,
      READY_MAX_ACTIVE_REQUESTS: '1',
      DRAIN_DELAY_MS: '4000',
    });
  });

  const ready = async () => {
    const res = await fetch(`${extra.url}/ready`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it('serves /metrics only with the token', async () => {
    expect((await fetch(`${extra.url}/metrics`)).status).toBe(401);
    const res = await fetch(`${extra.url}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('# TYPE llmq_http_requests_total counter');
  });

  it('answers /ready 503 "overloaded" while a request is in progress, and 200 again after', async () => {
    expect(await ready()).toMatchObject({ status: 200, body: { status: 'ready', activeRequests: 0 } });
    // A submission whose body is still on its way: in progress until the client gives up.
    const held: ClientRequest = httpRequest(`${extra.url}/api/generate`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${keys.acme}`,
        'content-type': 'application/json',
        'content-length': '1000',
      },
    });
    held.on('error', () => undefined);
    held.write('{"prompt":');
    try {
      const overloaded = await eventually(async () => {
        const r = await ready();
        return r.status === 503 ? r : undefined;
      }, '/ready answers 503');
      expect(overloaded.body).toMatchObject({
        status: 'overloaded',
        redis: true,
        postgres: true,
        activeRequests: 1,
        reasons: ['1 requests in progress (READY_MAX_ACTIVE_REQUESTS 1)'],
      });
    } finally {
      held.destroy();
    }
    await eventually(async () => (await ready()).status === 200, '/ready answers 200 again');
  });

  it('answers /ready 503 "draining" after SIGTERM, while still serving, then exits 0', async () => {
    extra.process.process.kill('SIGTERM');
    const draining = await eventually(async () => {
      const r = await ready();
      return r.status === 503 ? r : undefined;
    }, '/ready answers 503 while draining');
    expect(draining.body).toMatchObject({
      status: 'draining',
      reasons: ['draining: the process is shutting down'],
    });
    // Still served meanwhile: the load balancer moves away before the listener closes.
    expect((await fetch(`${extra.url}/health`)).status).toBe(200);
    expect(await extra.process.exited).toBe(0);
  });
});
