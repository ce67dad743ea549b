import { createServer } from 'node:net';
import { eventually, promtoolCheckMetrics } from '@llmq/testing';
import {
  EventLoopMonitor,
  createApiMetrics,
  createWorkerMetrics,
  startMetricsServer,
  type ApiMetrics,
  type CountableQueue,
} from '@llmq/observability';
import type { Registry } from 'prom-client';

/** Label names that would make series per request: they must never appear. */
const UNBOUNDED = [
  'job_id',
  'jobId',
  'id',
  'tenant',
  'tenant_id',
  'key',
  'api_key',
  'prompt',
  'url',
  'path',
  'user',
];

function families(registry: Registry) {
  return registry.getMetricsAsArray().map((m) => {
    const { name, type, labelNames } = m as unknown as { name: string; type: string; labelNames: string[] };
    return { name, type, labelNames };
  });
}

describe('metric definitions', () => {
  let api: ApiMetrics;
  beforeAll(() => {
    api = createApiMetrics();
  });
  afterAll(() => api.close());

  it('are named by convention, with bounded labels only', () => {
    const all = [...families(api.registry), ...families(createWorkerMetrics().registry)].filter((f) =>
      f.name.startsWith('llmq_'),
    );
    expect(all.length).toBeGreaterThan(20);
    for (const f of all) {
      if (f.type === 'counter') expect(f.name).toMatch(/_total$/);
      else expect(f.name).not.toMatch(/_total$/);
      if (f.type === 'histogram') expect(f.name).toMatch(/_seconds$/);
      expect(f.name).not.toMatch(/_(ms|milliseconds|minutes)($|_)/);
      for (const label of f.labelNames) expect(UNBOUNDED).not.toContain(label);
    }
  });

  it('pass promtool check metrics, with series in them', async () => {
    const worker = createWorkerMetrics();
    api.httpRequests.inc({ route: '/api/jobs/:id', method: 'GET', status: '200' });
    api.httpDuration.observe({ route: '/api/jobs/:id', method: 'GET' }, 0.004);
    api.cacheHits.inc({ layer: 'semantic' });
    api.rateLimitRejections.inc({ reason: 'tokens' });
    worker.jobDuration.observe({ queue: 'generate', model: 'sim-small', outcome: 'completed' }, 3.2);
    worker.tokens.inc({ model: 'sim-small', type: 'output' }, 12);
    worker.costUsd.inc({ model: 'sim-small' }, 0.000018);
    worker.breakerState.set({ backend: 'sim-1' }, 2);
    for (const registry of [api.registry, worker.registry]) {
      const text = await registry.metrics();
      const check = await promtoolCheckMetrics(text);
      expect({ ok: check.ok, output: check.output }).toEqual({ ok: true, output: '' });
    }
    expect(await worker.registry.metrics()).toContain('llmq_upstream_breaker_state{backend="sim-1"} 2');
    // Node's event-loop lag comes with the defaults.
    expect(await api.registry.metrics()).toContain('nodejs_eventloop_lag_seconds');
  });
});

describe('llmq_queue_jobs', () => {
  it('reports every state of every queue at scrape time, and nothing when the queues cannot be read', async () => {
    let counts: Record<string, number> | Error = {
      wait: 7,
      prioritized: 2,
      active: 3,
      completed: 40,
      failed: 1,
    };
    const queue: CountableQueue = {
      name: 'generate',
      getJobCounts: async () => {
        if (counts instanceof Error) throw counts;
        return counts;
      },
    };
    const errors: unknown[] = [];
    const metrics = createApiMetrics({ queues: () => [queue], onCollectError: (e) => errors.push(e) });
    try {
      let text = await metrics.registry.metrics();
      expect(text).toContain('llmq_queue_jobs{queue="generate",state="waiting"} 7');
      expect(text).toContain('llmq_queue_jobs{queue="generate",state="prioritized"} 2');
      expect(text).toContain('llmq_queue_jobs{queue="generate",state="delayed"} 0');
      expect(text).toContain('llmq_queue_jobs{queue="generate",state="failed"} 1');
      counts = { wait: 1 };
      expect(await metrics.registry.metrics()).toContain(
        'llmq_queue_jobs{queue="generate",state="waiting"} 1',
      );
      counts = new Error('Redis is down');
      text = await metrics.registry.metrics();
      expect(text).not.toMatch(/^llmq_queue_jobs\{/m);
      expect(errors).toHaveLength(1);
    } finally {
      metrics.close();
    }
  });
});

describe('EventLoopMonitor', () => {
  it('reads about 0 on an idle loop, passes over one long pause, and sees a loop kept busy', async () => {
    const monitor = new EventLoopMonitor({ windowMs: 1000 });
    const hog = (ms: number) => {
      const until = Date.now() + ms;
      while (Date.now() < until); // a handler that holds the loop
    };
    let busy: NodeJS.Timeout | undefined;
    try {
      // Windows end at about 1000, 2000, 3000 ms; each reading holds until the next.
      await new Promise((r) => setTimeout(r, 1100));
      expect(monitor.lagMs()).toBeLessThan(100);
      hog(300); // one pause (a GC, say) among a hundred normal turns: the p99 ignores it
      await new Promise((r) => setTimeout(r, 1000));
      expect(monitor.lagMs()).toBeLessThan(150);
      busy = setInterval(() => hog(80), 1);
      await eventually(async () => monitor.lagMs() > 50, 'the lag of a busy loop shows', 4000);
    } finally {
      clearInterval(busy);
      monitor.stop();
    }
  });
});

describe('startMetricsServer', () => {
  it('serves /metrics (behind a token when set) and /health, and names METRICS_PORT when the port is taken', async () => {
    const metrics = createWorkerMetrics();
    const token = 'a-metrics-token-of-some-length';
    const server = await startMetricsServer({
      registry: metrics.registry,
      port: 0,
      token,
      health: () => ({ status: 'draining' }),
    });
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect((await fetch(`${server.url}/metrics`)).status).toBe(401);
      const ok = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      expect(ok.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(await ok.text()).toContain('# TYPE llmq_job_duration_seconds histogram');
      expect(await (await fetch(`${server.url}/health`)).json()).toEqual({ status: 'draining' });
      expect((await fetch(`${server.url}/other`)).status).toBe(404);

      await expect(startMetricsServer({ registry: metrics.registry, port: server.port })).rejects.toThrow(
        /METRICS_PORT/,
      );
    } finally {
      await server.close();
    }
    // The port is free again once closed.
    await new Promise<void>((resolve, reject) => {
      const probe = createServer().once('error', reject);
      probe.listen(server.port, '127.0.0.1', () => probe.close(() => resolve()));
    });
  });
});
