import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { HTTP_LATENCY_BUCKETS } from './buckets';
import { EventLoopMonitor, type EventLoopMonitorOptions } from './event-loop';
import { newRegistry, type RegistryOptions } from './registry';

/** A BullMQ queue as far as counting goes (BullMQ's `Queue` fits). */
export interface CountableQueue {
  readonly name: string;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
}

/** BullMQ's job states, and the `state` label each is exported as. */
const QUEUE_STATES = {
  wait: 'waiting',
  prioritized: 'prioritized',
  paused: 'paused',
  active: 'active',
  delayed: 'delayed',
  completed: 'completed',
  failed: 'failed',
} as const;

export interface ApiMetricsOptions extends RegistryOptions {
  /** The queues whose job counts `llmq_queue_jobs` reports, read from Redis at each scrape. */
  queues?: () => CountableQueue[];
  /** Called when a scrape could not read the queues (their series are then left out). */
  onCollectError?: (error: unknown) => void;
  eventLoop?: EventLoopMonitorOptions;
}

/** The metrics of an API process. Labels are bounded: route patterns, methods, codes, names from config. */
export interface ApiMetrics {
  registry: Registry;
  /** `llmq_http_requests_total{route,method,status}`: `route` is the Express route pattern. */
  httpRequests: Counter<'route' | 'method' | 'status'>;
  /** `llmq_http_request_duration_seconds{route,method}` */
  httpDuration: Histogram<'route' | 'method'>;
  /** `llmq_http_requests_in_flight` */
  httpInFlight: Gauge;
  /** `llmq_sse_connections`: open job event streams. */
  sseConnections: Gauge;
  /** `llmq_ws_connections`: open WebSocket connections (`/ws`). */
  wsConnections: Gauge;
  /**
   * `llmq_ws_messages_total{direction,type}`: WebSocket envelopes received (`in`) and sent (`out`),
   * by type; a received message of no known type is `invalid`. Coalesced tokens count once per frame.
   */
  wsMessages: Counter<'direction' | 'type'>;
  /**
   * `llmq_ws_closes_total{reason}`: WebSocket connections ended, by why: `client`, `heartbeat`
   * (no pong), `slow_consumer` (send buffer past its cap), `message_too_large`, `unauthorized`,
   * `protocol_error`, `shutdown`.
   */
  wsCloses: Counter<'reason'>;
  /** `llmq_cache_hits_total{layer}`: submissions answered from the cache (redis, postgres, semantic). */
  cacheHits: Counter<'layer'>;
  /** `llmq_cache_misses_total`: submissions that looked in the cache and found nothing. */
  cacheMisses: Counter;
  /** `llmq_rate_limit_rejections_total{reason}`: submissions refused by admission or backpressure. */
  rateLimitRejections: Counter<'reason'>;
  /** `llmq_queue_jobs{queue,state}`: BullMQ's job counts at scrape time. */
  queueJobs: Gauge<'queue' | 'state'>;
  /** The event-loop lag /ready compares with its limit. */
  eventLoop: EventLoopMonitor;
  /** Stops the event-loop monitor. */
  close(): void;
}

export function createApiMetrics(options: ApiMetricsOptions = {}): ApiMetrics {
  const registry = newRegistry(options);
  const registers = [registry];
  const queues = options.queues;
  const onCollectError = options.onCollectError;
  const eventLoop = new EventLoopMonitor(options.eventLoop);
  return {
    registry,
    httpRequests: new Counter({
      name: 'llmq_http_requests_total',
      help: 'HTTP requests answered, by route pattern, method and status code',
      labelNames: ['route', 'method', 'status'],
      registers,
    }),
    httpDuration: new Histogram({
      name: 'llmq_http_request_duration_seconds',
      help: 'Time to answer an HTTP request (an SSE stream: until it closes), by route pattern and method',
      labelNames: ['route', 'method'],
      buckets: [...HTTP_LATENCY_BUCKETS],
      registers,
    }),
    httpInFlight: new Gauge({
      name: 'llmq_http_requests_in_flight',
      help: 'HTTP requests being answered now (open SSE streams included)',
      registers,
    }),
    sseConnections: new Gauge({
      name: 'llmq_sse_connections',
      help: 'Open SSE streams of job events',
      registers,
    }),
    wsConnections: new Gauge({
      name: 'llmq_ws_connections',
      help: 'Open WebSocket connections',
      registers,
    }),
    wsMessages: new Counter({
      name: 'llmq_ws_messages_total',
      help: 'WebSocket envelopes received (in) and sent (out), by type',
      labelNames: ['direction', 'type'],
      registers,
    }),
    wsCloses: new Counter({
      name: 'llmq_ws_closes_total',
      help: 'WebSocket connections ended, by reason (client, heartbeat, slow_consumer, message_too_large, unauthorized, protocol_error, shutdown)',
      labelNames: ['reason'],
      registers,
    }),
    cacheHits: new Counter({
      name: 'llmq_cache_hits_total',
      help: 'Submissions answered from the response cache, by layer (redis, postgres, semantic)',
      labelNames: ['layer'],
      registers,
    }),
    cacheMisses: new Counter({
      name: 'llmq_cache_misses_total',
      help: 'Submissions that looked in the response cache and found no answer',
      registers,
    }),
    rateLimitRejections: new Counter({
      name: 'llmq_rate_limit_rejections_total',
      help: 'Submissions refused by admission (key limits, budgets, tenant concurrency) or backpressure, by reason',
      labelNames: ['reason'],
      registers,
    }),
    queueJobs: new Gauge({
      name: 'llmq_queue_jobs',
      help: 'Jobs in each queue by state, read from BullMQ at scrape time',
      labelNames: ['queue', 'state'],
      registers,
      async collect() {
        if (!queues) return;
        try {
          const list = queues();
          const counts = await Promise.all(list.map((q) => q.getJobCounts(...Object.keys(QUEUE_STATES))));
          this.reset();
          list.forEach((q, i) => {
            for (const [type, state] of Object.entries(QUEUE_STATES)) {
              this.set({ queue: q.name, state }, counts[i]?.[type] ?? 0);
            }
          });
        } catch (error) {
          // Stale counts would look like a quiet queue: report none, so `absent()` alerts fire.
          this.reset();
          onCollectError?.(error);
        }
      },
    }),
    eventLoop,
    close: () => eventLoop.stop(),
  };
}
