import { Agent, request, errors as undiciErrors } from 'undici';
import type { GenerationSpec } from '@llmq/contracts';
import type { Adapter, StreamPiece } from './adapters/types';
import { PeakEwma } from './balancer';
import { CircuitBreaker, type BreakerOptions, type BreakerState } from './breaker';
import { ProviderError, classifyStatus } from './errors';
import type { BackendConfig } from './registry';
import { parseRetryAfter } from './retry';

export interface AttemptResult {
  text: string;
  finishReason: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  ttftMs: number | null;
  latencyMs: number;
}

export interface AttemptOptions {
  spec: GenerationSpec;
  upstreamModel: string;
  signal: AbortSignal;
  onDelta: (text: string) => void;
}

/**
 * One backend's live state in this process: its breaker, latency estimate, requests in flight,
 * a rate-limit cool-down, and a connection pool whose timeouts come from the providers file.
 */
export class BackendState {
  readonly breaker: CircuitBreaker;
  readonly latency: PeakEwma;
  inFlight = 0;
  /** Epoch ms before which the backend is out of rotation (a 429's Retry-After, a fleet limit). */
  coolUntil = 0;
  private agent: Agent;

  constructor(
    public config: BackendConfig,
    readonly adapter: Adapter,
    private readonly apiKey: string | undefined,
    breakerOptions: BreakerOptions,
    onBreaker: (state: BreakerState) => void,
  ) {
    this.breaker = new CircuitBreaker(breakerOptions, Date.now, onBreaker);
    this.latency = new PeakEwma(config.timeouts.firstTokenMs > 1000 ? 1000 : config.timeouts.firstTokenMs);
    this.agent = this.newAgent();
  }

  get id(): string {
    return this.config.id;
  }

  get weight(): number {
    return this.config.weight;
  }

  /**
   * A failed attempt counts as a slow one: failures are often fast (an instant 500), and a
   * balancer that learned only their speed would send more traffic to the broken backend.
   */
  penalize(elapsedMs: number): void {
    this.latency.observe(
      Math.min(Math.max(elapsedMs, this.latency.ms * 2, 1000), this.config.timeouts.firstTokenMs),
    );
  }

  /** Takes a reloaded configuration; the pool is rebuilt only if its own settings changed. */
  update(config: BackendConfig): void {
    const rebuild =
      config.timeouts.connectMs !== this.config.timeouts.connectMs ||
      config.concurrency !== this.config.concurrency;
    this.config = config;
    if (rebuild) {
      const old = this.agent;
      this.agent = this.newAgent();
      void old.close().catch(() => undefined);
    }
  }

  /** Can take a request now (breaker, cool-down, local concurrency). */
  eligible(now: number): boolean {
    return this.coolUntil <= now && this.inFlight < this.config.concurrency && this.breaker.available;
  }

  /** Earliest time this backend may be eligible again, for scheduling a wait. */
  availableAt(now: number): number {
    const at = Math.max(now, this.coolUntil, this.breaker.retryAt(now));
    return this.inFlight >= this.config.concurrency ? Math.max(at, now + 50) : at;
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }

  /** An active health check: the backend answers its health path. */
  async probe(timeoutMs = 3000): Promise<boolean> {
    try {
      const res = await request(this.url(this.config.healthPath), {
        method: 'GET',
        dispatcher: this.agent,
        headers: this.adapter.request({ model: '', messages: [], params: {} }, '', this.apiKey).headers,
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.body.dump();
      return res.statusCode >= 200 && res.statusCode < 300;
    } catch {
      return false;
    }
  }

  /**
   * One streamed call. Timeouts: connect (the pool), first token and total (timers that abort
   * the request, which closes the socket), idle gap between chunks (undici's bodyTimeout).
   */
  async attempt(options: AttemptOptions): Promise<AttemptResult> {
    const { timeouts } = this.config;
    const started = performance.now();
    const upstream = this.adapter.request(options.spec, options.upstreamModel, this.apiKey);
    const local = new AbortController();
    let timedOut: 'first_token' | 'total' | null = null;
    const abortFor = (why: 'first_token' | 'total') => () => {
      timedOut = why;
      local.abort(new Error(why));
    };
    const firstTokenTimer = setTimeout(abortFor('first_token'), timeouts.firstTokenMs);
    const totalTimer = setTimeout(abortFor('total'), timeouts.totalMs);
    const signal = AbortSignal.any([options.signal, local.signal]);
    let text = '';
    let ttftMs: number | null = null;
    const result: AttemptResult = {
      text: '',
      finishReason: null,
      promptTokens: null,
      completionTokens: null,
      ttftMs: null,
      latencyMs: 0,
    };
    try {
      const res = await request(this.url(upstream.path), {
        method: 'POST',
        headers: upstream.headers,
        body: upstream.body,
        dispatcher: this.agent,
        signal,
        headersTimeout: timeouts.firstTokenMs,
        bodyTimeout: timeouts.idleMs,
      });
      if (res.statusCode >= 400) {
        const body = await res.body.text().catch(() => '');
        throw classifyStatus(res.statusCode, body, parseRetryAfter(headerReader(res.headers)), this.id);
      }
      let done = false;
      for await (const piece of sseEvents(res.body, this.adapter)) {
        if (piece.error) {
          const overloaded = /overload|rate|server|unavailable/i.test(piece.error.type);
          throw new ProviderError(
            `provider error inside the stream: ${piece.error.message}`,
            `upstream_stream_${piece.error.type}`,
            overloaded ? 'retryable' : 'fatal',
            { backendId: this.id, upstreamMessage: piece.error.message },
          );
        }
        if (piece.delta) {
          if (ttftMs === null) {
            ttftMs = performance.now() - started;
            clearTimeout(firstTokenTimer);
          }
          text += piece.delta;
          options.onDelta(piece.delta);
        }
        if (piece.finishReason) result.finishReason = piece.finishReason;
        if (piece.promptTokens !== undefined) result.promptTokens = piece.promptTokens;
        if (piece.completionTokens !== undefined) result.completionTokens = piece.completionTokens;
        if (piece.done) done = true;
      }
      if (!done) {
        throw new ProviderError(
          'the provider stream ended without its end marker (cut mid-stream)',
          'upstream_stream_cut',
          'retryable',
          {
            backendId: this.id,
          },
        );
      }
      result.text = text;
      result.ttftMs = ttftMs;
      result.latencyMs = performance.now() - started;
      return result;
    } catch (error) {
      if (options.signal.aborted)
        throw options.signal.reason instanceof Error ? options.signal.reason : new Error('aborted');
      if (error instanceof ProviderError) throw error;
      throw this.transportError(error, timedOut);
    } finally {
      clearTimeout(firstTokenTimer);
      clearTimeout(totalTimer);
      // Peak-EWMA learns from time to first token: output length says nothing of load.
      if (ttftMs !== null) this.latency.observe(ttftMs);
    }
  }

  private transportError(error: unknown, timedOut: 'first_token' | 'total' | null): ProviderError {
    const details = { backendId: this.id };
    if (timedOut === 'first_token' || error instanceof undiciErrors.HeadersTimeoutError) {
      return new ProviderError(
        'no first token within the time limit',
        'upstream_first_token_timeout',
        'retryable',
        details,
      );
    }
    if (timedOut === 'total')
      return new ProviderError(
        'the call exceeded its total time limit',
        'upstream_total_timeout',
        'retryable',
        details,
      );
    if (error instanceof undiciErrors.BodyTimeoutError) {
      return new ProviderError(
        'the stream went idle past the time limit',
        'upstream_idle_timeout',
        'retryable',
        details,
      );
    }
    if (error instanceof undiciErrors.ConnectTimeoutError) {
      return new ProviderError(
        'could not connect within the time limit',
        'upstream_connect_timeout',
        'retryable',
        details,
      );
    }
    const code = (error as { code?: string }).code;
    const message = error instanceof Error ? error.message : String(error);
    return new ProviderError(
      `provider connection failed: ${code ?? message}`,
      'upstream_connection',
      'retryable',
      details,
    );
  }

  private url(path: string): string {
    return `${this.config.baseUrl.replace(/\/$/, '')}${path}`;
  }

  private newAgent(): Agent {
    return new Agent({
      connect: { timeout: this.config.timeouts.connectMs },
      connections: this.config.concurrency,
      keepAliveTimeout: 30_000,
    });
  }
}

function headerReader(headers: Record<string, string | string[] | undefined>) {
  return {
    get(name: string): string | null {
      const v = headers[name];
      return v === undefined ? null : Array.isArray(v) ? (v[0] ?? null) : v;
    },
  };
}

/** Splits a byte stream into SSE events and hands each to the adapter. */
async function* sseEvents(body: AsyncIterable<Buffer>, adapter: Adapter): AsyncGenerator<StreamPiece> {
  const decoder = new TextDecoder();
  let buffer = '';
  let event: string | null = null;
  let data: string[] = [];
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, '');
      buffer = buffer.slice(nl + 1);
      if (line === '') {
        if (data.length > 0) {
          const piece = adapter.parse(event, data.join('\n'));
          if (piece) yield piece;
        }
        event = null;
        data = [];
      } else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      else if (line.startsWith('event:')) event = line.slice(6).trim();
    }
  }
}
