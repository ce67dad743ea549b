import type { IncomingMessage } from 'node:http';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { PinoInstrumentation } from '@opentelemetry/instrumentation-pino';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { NodeSDK } from '@opentelemetry/sdk-node';
import type { Tracing } from './start';

/** Requests not worth a trace (probes, scrapes) or whose URL may carry a secret (the dashboard's `?token=`). */
const UNTRACED = /^\/(health|ready|metrics)(\/|\?|$)|^\/admin\/queues(\/|\?|$)/;

/**
 * Redis spans name the command and its first argument (a key: ids and hashes in llmq), never the
 * rest: the default serializer keeps every argument of EVAL/EVALSHA, which for BullMQ's scripts
 * is the job's data, prompt included.
 */
function redisStatement(command: string, args: unknown[]): string {
  if (/^(eval|evalsha|fcall|script)/i.test(command)) return command;
  const first = args[0];
  return typeof first === 'string' && first.length <= 200 ? `${command} ${first}` : command;
}

/** The SDK with the instrumentations llmq needs; traces only (metrics are Prometheus, logs stdout). */
export function startSdk(serviceName: string): Tracing {
  const sdk = new NodeSDK({
    serviceName,
    // Metrics and logs stay out of OpenTelemetry, whatever OTEL_METRICS_EXPORTER/OTEL_LOGS_EXPORTER say.
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (req: IncomingMessage) => UNTRACED.test(req.url ?? ''),
        // Outgoing calls outside a request or job (health checks of backends) are not traces of their own.
        requireParentforOutgoingSpans: true,
        redactedQueryParamsServer: ['token', 'key', 'api_key', 'apikey', 'sig', 'signature'],
      }),
      new ExpressInstrumentation(),
      // undici: the LLM client (the undici package) and global fetch (embeddings), via diagnostics channels.
      new UndiciInstrumentation({ requireParentforSpans: true }),
      new IORedisInstrumentation({ requireParentSpan: true, dbStatementSerializer: redisStatement }),
      // Statements are parameterised: values (prompts, results) are never part of a span.
      new PgInstrumentation({ requireParentSpan: true, enhancedDatabaseReporting: false }),
      // trace_id and span_id on every log line written inside a span; the lines stay on stdout.
      new PinoInstrumentation({ disableLogSending: true }),
    ],
  });
  sdk.start();
  return { enabled: true, shutdown: () => sdk.shutdown().catch(() => undefined) };
}
