/**
 * OpenTelemetry across processes: with the standard OTEL_ variables pointing at an OTLP/HTTP
 * receiver (JSON), one trace follows a job from the API's submit request through the queue (the
 * trace context travels in the job's payload) to the worker's processing and its upstream call,
 * with Postgres and Redis spans inside, and log lines carry the trace id.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eventually, useStack } from '@llmq/testing';

jest.setTimeout(120_000);

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: OtlpValue }[];
}
interface Span extends OtlpSpan {
  service: string;
  attrs: Record<string, string | number | boolean | undefined>;
}

const KIND = { server: 2, client: 3, producer: 4, consumer: 5 };
const spans: Span[] = [];
const bodies: string[] = [];
let receiver: Server;
const otelEnv: Record<string, string> = {};

// An OTLP/HTTP receiver, the JSON flavour: what a collector on :4318 would get.
beforeAll(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        bodies.push(body);
        collect(JSON.parse(body));
      }
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  Object.assign(otelEnv, {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_BSP_SCHEDULE_DELAY: '100',
    LOG_LEVEL: 'info',
  });
});
afterAll(() => new Promise((r) => receiver.close(r)));

// The environment objects are read when the processes start, after the receiver is up.
const { stack, keys } = useStack({ workers: 1, apiEnv: otelEnv, workerEnv: otelEnv });

function collect(doc: {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value: OtlpValue }[] };
    scopeSpans?: { spans?: OtlpSpan[] }[];
  }[];
}) {
  for (const rs of doc.resourceSpans ?? []) {
    const service = rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        const attrs: Span['attrs'] = {};
        for (const a of s.attributes ?? []) {
          attrs[a.key] = a.value.stringValue ?? a.value.intValue ?? a.value.boolValue;
        }
        spans.push({ ...s, service, attrs });
      }
    }
  }
}

describe('tracing', () => {
  test('one trace follows a job from submit through the worker to the provider call', async () => {
    const prompt = `trace me ${randomUUID()}`;
    const { res, body } = await stack.submit(keys.acme!, { prompt, max_tokens: 16 });
    expect(res.status).toBe(202);
    expect((await stack.waitForJob(keys.acme!, body.jobId)).status).toBe('completed');

    const submit = await eventually(
      async () =>
        spans.find(
          (s) =>
            s.service === 'llmq-api' &&
            s.kind === KIND.server &&
            (s.attrs['url.path'] ?? s.attrs['http.target']) === '/api/generate',
        ),
      'the API exported its server span of the submit',
    );
    const trace = submit.traceId;
    const inTrace = () => spans.filter((s) => s.traceId === trace);
    const describe = () =>
      inTrace()
        .map((s) => `${s.service} ${s.kind} ${s.name}`)
        .join('\n');
    const { send, processing, upstream } = await eventually(
      async () => {
        const all = inTrace();
        const send = all.find((s) => s.service === 'llmq-api' && s.kind === KIND.producer);
        const processing = all.find((s) => s.service === 'llmq-worker' && s.kind === KIND.consumer);
        const upstream = all.find(
          (s) =>
            s.service === 'llmq-worker' &&
            s.kind === KIND.client &&
            String(s.attrs['url.full'] ?? '').startsWith(`${stack.simulatorUrl}/v1/chat/completions`),
        );
        return send && processing && upstream ? { send, processing, upstream } : undefined;
      },
      () => `the trace holds the enqueue, the job and the upstream call; it has:\n${describe()}`,
    );

    expect(send.name).toBe('send generate');
    expect(send.attrs['messaging.message.id']).toBe(body.jobId);
    // The job's span continues from the context the job carried: the enqueue's span.
    expect(processing.name).toBe('process generate');
    expect(processing.parentSpanId).toBe(send.spanId);
    expect(processing.attrs['messaging.message.id']).toBe(body.jobId);
    // The upstream call happens inside the job's span.
    const byId = new Map(inTrace().map((s) => [s.spanId, s]));
    const ancestors = (s: Span): string[] => {
      const parent = s.parentSpanId ? byId.get(s.parentSpanId) : undefined;
      return parent ? [parent.spanId, ...ancestors(parent)] : [];
    };
    expect(ancestors(upstream)).toContain(processing.spanId);
    expect(ancestors(send)).toContain(submit.spanId);
    // Postgres and Redis work of both processes is part of it.
    const dbSystems = new Set(
      inTrace().map((s) => `${s.service} ${s.attrs['db.system'] ?? s.attrs['db.system.name']}`),
    );
    for (const expected of [
      'llmq-api postgresql',
      'llmq-api redis',
      'llmq-worker postgresql',
      'llmq-worker redis',
    ]) {
      expect(dbSystems).toContain(expected);
    }
    // No prompt or completion text leaves in a span (Redis arguments hold the job's data).
    const job = await stack.waitForJob(keys.acme!, body.jobId);
    for (const text of bodies) {
      expect(text).not.toContain(prompt);
      expect(text).not.toContain(job.result!);
    }
    // Log lines written inside the job's span name its trace.
    const lines = stack.workers[0]!.output()
      .split('\n')
      .filter((l) => l.includes(body.jobId));
    expect(lines.some((l) => l.includes(`"trace_id":"${trace}"`))).toBe(true);
  });

  test('health probes are not traced', async () => {
    await fetch(`${stack.apiUrl}/health`);
    await new Promise((r) => setTimeout(r, 500));
    expect(
      spans.filter((s) => s.attrs['url.path'] === '/health' || s.attrs['http.target'] === '/health'),
    ).toEqual([]);
  });
});
