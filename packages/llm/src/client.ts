import type { GenerationSpec, Usage } from '@llmq/contracts';
import { anthropicAdapter } from './adapters/anthropic';
import { openaiAdapter } from './adapters/openai';
import type { Adapter } from './adapters/types';
import { BackendState } from './backend';
import { pickTwo } from './balancer';
import type { BreakerOptions } from './breaker';
import { AttemptsExhaustedError, ProviderError, RetryLaterError, StreamBrokenError } from './errors';
import { NEVER_FITS, type FleetLimiter } from './fleet-limiter';
import type { LlmHooks } from './hooks';
import type { Registry } from './registry';
import { backoffDelay, sleep, type BackoffOptions } from './retry';
import { costOf, countPromptTokens, countTextTokens } from './tokens';

const ADAPTERS: Record<'openai' | 'anthropic', Adapter> = {
  openai: openaiAdapter,
  anthropic: anthropicAdapter,
};

export interface LlmClientOptions {
  registry: Registry;
  /** Reads provider keys by the names the providers file gives (apiKeyEnv). */
  secrets: (name: string) => string | undefined;
  limiter?: FleetLimiter;
  hooks?: LlmHooks;
  breaker?: BreakerOptions;
  backoff?: BackoffOptions;
  /** Upstream calls per model before moving to its fallback. @defaultValue 3 */
  attemptsPerModel?: number;
  /** Longest wait (a Retry-After, a cool-down) served in-process; longer ones become RetryLaterError. @defaultValue 10000 */
  maxInlineWaitMs?: number;
  /** Active health checks of open or cooling backends. @defaultValue 5000 */
  healthIntervalMs?: number;
  /**
   * `p2c-peak-ewma` (power of two choices on Peak-EWMA latency × in-flight / weight), or
   * `round-robin` (the naive reference the routing benchmark compares against).
   * @defaultValue "p2c-peak-ewma"
   */
  routing?: 'p2c-peak-ewma' | 'round-robin';
}

export interface StreamRequest {
  spec: GenerationSpec;
  signal: AbortSignal;
  onDelta: (text: string) => void;
  /** Called after every upstream call, whatever its outcome: what the usage ledger records. */
  onAttempt?: (report: AttemptReport) => void;
}

/** One upstream call of a request. */
export interface AttemptReport {
  backendId: string;
  /** The public model this call served. */
  model: string;
  latencyMs: number;
  ttftMs: number | null;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  /** `ok`, `aborted`, or the error code. */
  outcome: string;
}

export interface StreamResult {
  text: string;
  finishReason: string | null;
  usage: Usage;
  costUsd: number;
  /** The public model that answered (after alias resolution and fallback). */
  model: string;
  backendId: string;
  attempts: number;
}

/**
 * The one retry layer between jobs and providers: routing (power of two choices on Peak-EWMA),
 * per-backend circuit breakers and 429 cool-downs, fleet-wide limits, backoff with full jitter,
 * Retry-After, fallback to other models before the first token, and nothing after it.
 */
export class LlmClient {
  private registry: Registry;
  private readonly states = new Map<string, BackendState>();
  private readonly o: Required<
    Pick<LlmClientOptions, 'attemptsPerModel' | 'maxInlineWaitMs' | 'healthIntervalMs'>
  >;
  private healthTimer: NodeJS.Timeout | null = null;
  private roundRobin = 0;

  constructor(private readonly options: LlmClientOptions) {
    this.registry = options.registry;
    this.o = {
      attemptsPerModel: options.attemptsPerModel ?? 3,
      maxInlineWaitMs: options.maxInlineWaitMs ?? 10_000,
      healthIntervalMs: options.healthIntervalMs ?? 5000,
    };
    this.sync();
  }

  /** Takes a reloaded registry: new backends join, removed ones leave, changed ones update in place. */
  setRegistry(registry: Registry): void {
    this.registry = registry;
    this.sync();
  }

  /** Whether the model (or alias) is served. */
  serves(model: string): boolean {
    return this.registry.resolve(model) !== null;
  }

  /** Live state per backend, for tests and metrics. */
  backendStates(): ReadonlyMap<string, BackendState> {
    return this.states;
  }

  startHealthChecks(): void {
    this.healthTimer ??= setInterval(() => void this.checkHealth(), this.o.healthIntervalMs);
    this.healthTimer.unref();
  }

  async close(): Promise<void> {
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.healthTimer = null;
    await Promise.all([...this.states.values()].map((s) => s.close()));
  }

  async stream(req: StreamRequest): Promise<StreamResult> {
    const first = this.registry.resolve(req.spec.model);
    if (!first) {
      throw new ProviderError(
        `model "${req.spec.model}" is not in the providers file`,
        'model_not_found',
        'fatal',
      );
    }
    const promptEstimate = countPromptTokens(req.spec.messages);
    const reserve = promptEstimate + (req.spec.params.max_tokens ?? 1024);
    let tokensSent = 0;
    const onDelta = (text: string) => {
      tokensSent++;
      req.onDelta(text);
    };
    let attempts = 0;
    let last: ProviderError | undefined;
    let soonest = Infinity;
    const chain = [first.name, ...first.fallback];
    const waitDeadline = Date.now() + this.o.maxInlineWaitMs;

    for (const [i, modelName] of chain.entries()) {
      const route = this.registry.resolve(modelName);
      if (!route) continue;
      if (i > 0) this.options.hooks?.onFallback?.({ from: chain[i - 1]!, to: route.name });
      let modelAttempts = 0;
      const tried = new Set<string>();
      while (modelAttempts < this.o.attemptsPerModel) {
        const now = Date.now();
        const ready = route.targets
          .map((t) => ({ t, s: this.states.get(t.backend.id)! }))
          .filter(({ s }) => s.eligible(now));
        // A retry goes to a backend this request has not failed on, when there is one.
        const fresh = ready.filter(({ s }) => !tried.has(s.id));
        const eligible = fresh.length > 0 ? fresh : ready;
        if (eligible.length === 0) {
          // Nobody can take it now: wait here if that is short, else move on (fallback, or a later run).
          const at = Math.min(...route.targets.map((t) => this.states.get(t.backend.id)!.availableAt(now)));
          if (at <= waitDeadline) {
            await sleep(Math.max(at - now, 10), req.signal);
            continue;
          }
          soonest = Math.min(soonest, at);
          break;
        }
        const picked =
          this.options.routing === 'round-robin'
            ? eligible[this.roundRobin++ % eligible.length]!
            : pickTwo(
                eligible.map(({ t, s }) => ({
                  id: s.id,
                  latency: s.latency,
                  inFlight: s.inFlight,
                  weight: s.weight,
                  t,
                  s,
                })),
              )!;
        const { s: state, t: target } = picked;

        const limiter = this.options.limiter;
        const admission = limiter ? await limiter.acquire(state.id, state.config.limits, reserve) : null;
        if (admission && !admission.ok) {
          this.options.hooks?.onRejectedByLimit?.({ backendId: state.id, reason: admission.reason });
          if (admission.retryAfterMs === NEVER_FITS) {
            throw new ProviderError(
              `the request (${reserve} tokens) is larger than backend ${state.id}'s whole tokens-per-minute budget`,
              'request_exceeds_provider_limit',
              'fatal',
              { backendId: state.id },
            );
          }
          state.coolUntil = Math.max(state.coolUntil, Date.now() + admission.retryAfterMs);
          continue;
        }
        if (!state.breaker.tryAcquire()) continue;

        attempts++;
        modelAttempts++;
        state.inFlight++;
        this.options.hooks?.onAttempt?.({ backendId: state.id, model: route.name });
        const started = performance.now();
        try {
          const r = await state.attempt({
            spec: req.spec,
            upstreamModel: target.upstreamModel,
            signal: req.signal,
            onDelta,
          });
          state.breaker.onSuccess();
          const usage = this.usageOf(r, promptEstimate);
          if (admission?.ok)
            await limiter!
              .settle(admission.reservation, state.config.limits, usage.total_tokens)
              .catch(() => undefined);
          const costUsd = costOf(usage, state.config.price);
          this.options.hooks?.onSuccess?.({
            backendId: state.id,
            model: route.name,
            latencyMs: r.latencyMs,
            ttftMs: r.ttftMs,
            promptTokens: usage.prompt_tokens,
            completionTokens: usage.completion_tokens,
            costUsd,
          });
          req.onAttempt?.({
            backendId: state.id,
            model: route.name,
            latencyMs: r.latencyMs,
            ttftMs: r.ttftMs,
            promptTokens: usage.prompt_tokens,
            completionTokens: usage.completion_tokens,
            costUsd,
            outcome: 'ok',
          });
          return {
            text: r.text,
            finishReason: r.finishReason,
            usage,
            costUsd,
            model: route.name,
            backendId: state.id,
            attempts,
          };
        } catch (error) {
          const failed = (outcome: string) =>
            req.onAttempt?.({
              backendId: state.id,
              model: route.name,
              latencyMs: performance.now() - started,
              ttftMs: null,
              promptTokens: 0,
              completionTokens: 0,
              costUsd: 0,
              outcome,
            });
          if (req.signal.aborted) {
            state.breaker.release();
            failed('aborted');
            throw error;
          }
          const e =
            error instanceof ProviderError
              ? error
              : new ProviderError(String(error), 'internal', 'retryable');
          // A failed call used no tokens worth counting against the budget; the request stays counted.
          if (admission?.ok)
            await limiter!.settle(admission.reservation, state.config.limits, 0).catch(() => undefined);
          failed(e.code);
          this.options.hooks?.onError?.({
            backendId: state.id,
            model: route.name,
            errorClass: e.errorClass,
            code: e.code,
            latencyMs: performance.now() - started,
          });
          // A refused request (4xx) says the backend is up; only failures of the backend count.
          if (e.errorClass === 'fatal') state.breaker.onSuccess();
          else {
            state.breaker.onFailure();
            state.penalize(performance.now() - started);
            tried.add(state.id);
          }
          if (tokensSent > 0) throw new StreamBrokenError(tokensSent, e);
          if (e.errorClass === 'fatal') throw e;
          last = e;
          if (e.errorClass === 'rate_limited') {
            const wait = e.details.retryAfterMs ?? 1000;
            state.coolUntil = Math.max(state.coolUntil, Date.now() + wait);
            if (wait > this.o.maxInlineWaitMs && route.targets.length === 1 && i === chain.length - 1) {
              throw new RetryLaterError(`provider asked to retry after ${Math.ceil(wait / 1000)} s`, wait, e);
            }
            continue; // the loop waits for the cool-down or picks another backend
          }
          const others = route.targets.some(
            (t) => t.backend.id !== state.id && this.states.get(t.backend.id)!.eligible(Date.now()),
          );
          if (!others && modelAttempts < this.o.attemptsPerModel) {
            const delay = backoffDelay(modelAttempts - 1, this.options.backoff);
            this.options.hooks?.onRetry?.({ backendId: state.id, model: route.name, delayMs: delay });
            await sleep(delay, req.signal);
          }
        } finally {
          state.inFlight--;
        }
      }
    }
    if (soonest !== Infinity) {
      const waitMs = Math.max(0, soonest - Date.now());
      const reason = last ? ` (last answer: ${last.message})` : '';
      throw new RetryLaterError(
        `no backend of ${first.name}${first.fallback.length ? ' or its fallbacks' : ''} can take the request for ${Math.ceil(waitMs / 1000)} s${reason}`,
        waitMs,
        last,
      );
    }
    if (last) throw new AttemptsExhaustedError(attempts, last);
    throw new RetryLaterError('no backend available', 1000);
  }

  private usageOf(
    r: { text: string; promptTokens: number | null; completionTokens: number | null },
    promptEstimate: number,
  ): Usage {
    const prompt = r.promptTokens ?? promptEstimate;
    const completion = r.completionTokens ?? countTextTokens(r.text);
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  }

  private sync(): void {
    const seen = new Set<string>();
    for (const [id, config] of this.registry.backends) {
      seen.add(id);
      const existing = this.states.get(id);
      if (existing && existing.config.kind === config.kind) {
        existing.update(config);
        continue;
      }
      void existing?.close();
      this.states.set(
        id,
        new BackendState(
          config,
          ADAPTERS[config.kind],
          config.apiKeyEnv ? this.options.secrets(config.apiKeyEnv) : undefined,
          this.options.breaker ?? {},
          (state) => this.options.hooks?.onBreaker?.({ backendId: id, state }),
        ),
      );
    }
    for (const [id, state] of this.states) {
      if (!seen.has(id)) {
        this.states.delete(id);
        void state.close();
      }
    }
  }

  private async checkHealth(): Promise<void> {
    await Promise.all(
      [...this.states.values()]
        .filter((s) => s.breaker.current === 'open')
        .map(async (s) => {
          if (await s.probe()) s.breaker.healthy();
        }),
    );
  }
}
