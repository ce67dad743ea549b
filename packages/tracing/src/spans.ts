import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
  type Attributes,
} from '@opentelemetry/api';

/** A trace context in W3C Trace Context form, as it travels inside a job's payload. */
export interface TraceCarrier {
  traceparent: string;
  tracestate?: string;
}

const tracer = () => trace.getTracer('llmq');

/**
 * The active trace context as W3C `traceparent`/`tracestate`, to put into a job at enqueue;
 * undefined when nothing is traced (tracing off, or no sampled span is active).
 */
export function currentTraceCarrier(): TraceCarrier | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  if (!carrier.traceparent) return undefined;
  return {
    traceparent: carrier.traceparent,
    ...(carrier.tracestate ? { tracestate: carrier.tracestate } : {}),
  };
}

export interface SpanOptions {
  /** `producer`: enqueueing a job; `consumer`: processing one. @defaultValue "internal" */
  kind?: 'internal' | 'producer' | 'consumer';
  attributes?: Attributes;
  /** The remote parent (a job's carrier); without it the span is a child of the active one. */
  parent?: TraceCarrier;
  /** Errors that are not failures (e.g. BullMQ's DelayedError): the span ends OK. */
  isExpected?: (error: unknown) => boolean;
}

const KINDS = { internal: SpanKind.INTERNAL, producer: SpanKind.PRODUCER, consumer: SpanKind.CONSUMER };

/**
 * Runs `fn` inside a new active span, so the spans of what it does (Redis, Postgres, HTTP) become
 * its children. A failure marks the span with the error's class and code, not its message:
 * messages may hold a provider's echo of the prompt (see @llmq/logging).
 */
export function withSpan<T>(name: string, options: SpanOptions, fn: () => Promise<T>): Promise<T> {
  const parent = options.parent ? propagation.extract(ROOT_CONTEXT, options.parent) : context.active();
  return tracer().startActiveSpan(
    name,
    {
      kind: KINDS[options.kind ?? 'internal'],
      ...(options.attributes ? { attributes: options.attributes } : {}),
    },
    parent,
    async (span) => {
      try {
        return await fn();
      } catch (error) {
        if (!options.isExpected?.(error)) {
          const type = errorType(error);
          span.setAttribute('error.type', type);
          span.setStatus({ code: SpanStatusCode.ERROR, message: type });
        }
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

function errorType(error: unknown): string {
  if (!(error instanceof Error)) return typeof error;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code !== '' ? `${error.name}:${code}` : error.name;
}
