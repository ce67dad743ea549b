import type { EmbeddingsClient, ResponseCache } from '@llmq/cache';
import type { ApiKeyRepository, ConversationRepository, JobRepository, Pool, UsageLedger } from '@llmq/db';
import type { Accounting, KeyLimiter } from '@llmq/rate-limit';
import type { Embedder, RagRepository } from '@llmq/rag';
import type { CancelBus, EventHub, EventStream, Producer, Redis } from '@llmq/queue';
import type { ApiMetrics } from '@llmq/observability';
import type { Logger } from 'pino';
import type { ApiSettings, ModelCatalog } from './config';
import type { LimitsEnv } from './limits';
import type { MetricsEnv } from './metrics';
import type { QueueDepth } from './queue-depth';

/** Everything createApp needs; main.ts builds the real ones, tests may build their own. */
export interface ApiDeps {
  settings: ApiSettings;
  models: ModelCatalog;
  logger: Logger;
  pool: Pool;
  jobs: JobRepository;
  /** Server-side conversation history (turns are jobs). */
  conversations: ConversationRepository;
  apiKeys: ApiKeyRepository;
  /** The edge Redis connection (fails fast while Redis is down). */
  redis: Redis;
  producer: Producer;
  events: EventStream;
  hub: EventHub;
  cancels: CancelBus;
  /** The response cache; null when caching is off. */
  cache: ResponseCache | null;
  /** The embeddings provider of the semantic cache; null when it is not configured. */
  embeddings: EmbeddingsClient | null;
  /** Per-key limits, budgets and tenant concurrency (Redis). */
  limiter: KeyLimiter;
  /** The usage ledger and the settlement of admissions. */
  accounting: Accounting;
  ledger: UsageLedger;
  /** Jobs waiting in the queues, for backpressure. */
  queueDepth: QueueDepth;
  /** Limit defaults and backpressure settings. */
  limitsEnv: LimitsEnv;
  /** RAG collections: writes on the primary, searches through the read replicas. */
  rag: RagRepository;
  /** Embeds RAG search queries; null when no embeddings provider is configured. */
  embedder: Embedder | null;
  /** Prometheus metrics of this process (and its event-loop monitor). */
  metrics: ApiMetrics;
  /** Metrics token, readiness limits, scaling thresholds. */
  metricsEnv: MetricsEnv;
}
