import { withSpan, type TraceCarrier } from '@llmq/tracing';
import { DelayedError, type Job } from 'bullmq';

type Processor<R> = (job: Job, token?: string) => Promise<R>;

/**
 * Runs each job of `queue` inside a consumer span, a child of the submission's span when the
 * job carries its trace context (`trace` in the payload, W3C traceparent), so one trace follows
 * a job from the API through the queue to the provider call. Without tracing this costs a no-op
 * span.
 */
export function withJobSpan<R>(queue: string, processor: Processor<R>): Processor<R> {
  return (job, token) =>
    withSpan(
      `process ${queue}`,
      {
        kind: 'consumer',
        attributes: {
          'messaging.system': 'bullmq',
          'messaging.operation.type': 'process',
          'messaging.destination.name': queue,
          'messaging.message.id': job.id ?? '',
          'llmq.job.attempt': job.attemptsMade + 1,
        },
        ...carrierOf(job.data),
        // A job delayed for want of provider capacity did not fail.
        isExpected: (error) => error instanceof DelayedError,
      },
      () => processor(job, token),
    );
}

function carrierOf(data: unknown): { parent?: TraceCarrier } {
  const trace = (data as { trace?: unknown } | null)?.trace as Partial<TraceCarrier> | undefined;
  if (typeof trace?.traceparent !== 'string') return {};
  return {
    parent: {
      traceparent: trace.traceparent,
      ...(typeof trace.tracestate === 'string' ? { tracestate: trace.tracestate } : {}),
    },
  };
}
