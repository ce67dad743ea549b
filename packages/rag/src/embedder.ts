import {
  AttemptsExhaustedError,
  ProviderError,
  RetryLaterError,
  backoffDelay,
  classifyStatus,
  parseRetryAfter,
  sleep,
} from '@llmq/llm';

export interface EmbedderOptions {
  /** OpenAI-compatible base URL (…/v1); requests go to `${baseUrl}/embeddings`. */
  baseUrl: string;
  model: string;
  /** Sent as a bearer token; never logged, and masked in provider messages that echo it. */
  apiKey?: string;
  /**
   * The length every vector must have (the vector column's). Checked, not requested: providers
   * that do not support the `dimensions` parameter reject it.
   */
  dimensions: number;
  /** Inputs per request. @defaultValue 64 */
  batchSize?: number;
  /** Requests per batch, the first included. @defaultValue 4 */
  maxAttempts?: number;
  /** Time limit of one request, answer body included. @defaultValue 10000 */
  timeoutMs?: number;
  /** Full-jitter backoff between attempts (a longer Retry-After wins). */
  backoff?: { baseMs?: number; capMs?: number };
  /**
   * Longest Retry-After slept through in-process; a longer one ends the call with a
   * RetryLaterError, so a job can be run again later instead of holding its worker.
   * @defaultValue 10000
   */
  maxInlineWaitMs?: number;
}

/** The provider's vectors are not as long as the configured `dimensions`: a configuration error. */
export class EmbeddingDimensionError extends Error {
  readonly code = 'embedding_dimension_mismatch';
  constructor(
    readonly expected: number,
    readonly actual: number,
    readonly model: string,
  ) {
    super(
      `embeddings model "${model}" returned vectors of ${actual} dimensions, but ${expected} are configured`,
    );
    this.name = 'EmbeddingDimensionError';
  }
}

/** OpenAI's own limit on inputs per request. */
const MAX_BATCH = 2048;

/**
 * Embeds texts through an OpenAI-compatible `/v1/embeddings` endpoint: in batches, retrying
 * transient failures (429, 408, 409, 5xx, connection errors, timeouts) with jittered backoff that
 * honours Retry-After, failing at once on any other refusal, with the provider's message.
 */
export class Embedder {
  /** Private fields, out of reach of logging or serialising the embedder. */
  readonly #apiKey: string | undefined;
  private readonly o: Omit<EmbedderOptions, 'apiKey'>;
  private readonly url: string;
  private readonly backendId: string;
  private readonly batchSize: number;
  private readonly maxAttempts: number;
  private readonly timeoutMs: number;
  private readonly maxInlineWaitMs: number;

  constructor(options: EmbedderOptions) {
    const { apiKey, ...o } = options;
    this.o = o;
    this.#apiKey = apiKey || undefined;
    this.batchSize = o.batchSize ?? 64;
    this.maxAttempts = o.maxAttempts ?? 4;
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.maxInlineWaitMs = o.maxInlineWaitMs ?? 10_000;
    checkInteger('dimensions', o.dimensions, 1, Infinity);
    checkInteger('batchSize', this.batchSize, 1, MAX_BATCH);
    checkInteger('maxAttempts', this.maxAttempts, 1, Infinity);
    checkInteger('timeoutMs', this.timeoutMs, 1, Infinity);
    this.url = `${o.baseUrl.replace(/\/+$/, '')}/embeddings`;
    this.backendId = `embeddings:${new URL(this.url).host}`;
  }

  async embed(text: string, signal?: AbortSignal): Promise<number[]> {
    const [vector] = await this.embedMany([text], signal);
    return vector!;
  }

  /** One vector per text, in the order of `texts`. Batches go one after another. */
  async embedMany(texts: string[], signal?: AbortSignal): Promise<number[][]> {
    const empty = texts.findIndex((t) => t === '');
    if (empty >= 0)
      throw new RangeError(`texts[${empty}] is empty: embeddings providers reject empty inputs`);
    const vectors: number[][] = [];
    for (let i = 0; i < texts.length; i += this.batchSize) {
      vectors.push(...(await this.embedBatch(texts.slice(i, i + this.batchSize), signal)));
    }
    return vectors;
  }

  private async embedBatch(batch: string[], signal: AbortSignal | undefined): Promise<number[][]> {
    let last: ProviderError | undefined;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      try {
        return await this.request(batch, signal);
      } catch (error) {
        if (!(error instanceof ProviderError) || !error.retryable) throw error;
        last = error;
      }
      if (attempt === this.maxAttempts) break;
      const retryAfterMs = last.details.retryAfterMs;
      if (retryAfterMs !== undefined && retryAfterMs > this.maxInlineWaitMs) {
        throw new RetryLaterError(
          `the embeddings provider asked to retry after ${Math.ceil(retryAfterMs / 1000)} s`,
          retryAfterMs,
          last,
        );
      }
      await sleep(Math.max(backoffDelay(attempt - 1, this.o.backoff), retryAfterMs ?? 0), signal);
    }
    throw new AttemptsExhaustedError(this.maxAttempts, last!);
  }

  /** One request; every failure but the caller's abort becomes a classified ProviderError. */
  private async request(batch: string[], signal: AbortSignal | undefined): Promise<number[][]> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.#apiKey) headers.authorization = `Bearer ${this.#apiKey}`;
    try {
      const res = await fetch(this.url, {
        method: 'POST',
        headers,
        body: JSON.stringify({ model: this.o.model, input: batch, encoding_format: 'float' }),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      const body = await res.text();
      if (!res.ok) {
        throw classifyStatus(res.status, this.mask(body), parseRetryAfter(res.headers), this.backendId);
      }
      return this.vectors(body, batch.length);
    } catch (error) {
      if (error instanceof ProviderError || error instanceof EmbeddingDimensionError) throw error;
      if (signal?.aborted) throw signal.reason;
      if (timeout.aborted) {
        throw new ProviderError(
          `the embeddings provider did not answer within ${this.timeoutMs} ms`,
          'upstream_timeout',
          'retryable',
          { backendId: this.backendId },
        );
      }
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      const message = this.mask(error instanceof Error ? error.message : String(error));
      throw new ProviderError(
        `embeddings provider connection failed: ${cause ?? message}`,
        'upstream_connection',
        'retryable',
        { backendId: this.backendId },
      );
    }
  }

  /** The answer's vectors, put in input order by their `index`. */
  private vectors(body: string, count: number): number[][] {
    const data = parseData(body);
    if (!data || data.length !== count) return this.badAnswer(`expected ${count} embeddings`);
    const vectors: number[][] = new Array<number[]>(count);
    for (const item of data) {
      const index = item?.index;
      if (!Number.isInteger(index) || index! < 0 || index! >= count || vectors[index!]) {
        return this.badAnswer(`an embedding has a missing, repeated or out-of-range index`);
      }
      const vector = toVector(item!.embedding);
      if (!vector) return this.badAnswer('an embedding is neither an array of numbers nor base64');
      if (vector.length !== this.o.dimensions) {
        throw new EmbeddingDimensionError(this.o.dimensions, vector.length, this.o.model);
      }
      vectors[index!] = vector;
    }
    return vectors;
  }

  /** A malformed answer is treated like a bad gateway: another attempt may get a good one. */
  private badAnswer(reason: string): never {
    throw new ProviderError(
      `the embeddings provider sent a malformed answer: ${reason}`,
      'upstream_bad_response',
      'retryable',
      { backendId: this.backendId },
    );
  }

  /** Providers echo a wrong key in their 401 message (OpenAI masks most of it; others may not). */
  private mask(text: string): string {
    return this.#apiKey ? text.replaceAll(this.#apiKey, '[redacted]') : text;
  }
}

interface EmbeddingItem {
  index?: number;
  embedding?: unknown;
}

function parseData(body: string): (EmbeddingItem | null)[] | undefined {
  try {
    const parsed = JSON.parse(body) as { data?: unknown };
    return Array.isArray(parsed?.data) ? (parsed.data as (EmbeddingItem | null)[]) : undefined;
  } catch {
    return undefined;
  }
}

/** Floats as asked, or base64 float32 (little-endian) from a provider that ignores the format. */
function toVector(embedding: unknown): number[] | undefined {
  if (Array.isArray(embedding)) {
    return embedding.every((x) => typeof x === 'number' && Number.isFinite(x))
      ? (embedding as number[])
      : undefined;
  }
  if (typeof embedding !== 'string') return undefined;
  const bytes = Buffer.from(embedding, 'base64');
  if (bytes.length % 4 !== 0) return undefined;
  return Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
}

function checkInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `of at least ${min}` : `from ${min} to ${max}`;
    throw new RangeError(`${name} must be an integer ${range}, got ${value}`);
  }
}
