import { envDuration, envInt } from '@llmq/config';
import {
  KeyLimiter,
  rateLimitHeaders,
  toMicros,
  type Decision,
  type EffectiveLimits,
} from '@llmq/rate-limit';
import { z } from 'zod';
import { HttpError } from './errors';

/** Limit defaults for keys that do not set their own. 0 means no limit. */
export const limitsEnvSchema = z.object({
  RATE_LIMIT_REQUESTS_PER_MINUTE: envInt(600, { min: 0 }),
  /** Request bucket capacity; 0 = the per-minute rate. */
  RATE_LIMIT_REQUEST_BURST: envInt(0, { min: 0 }),
  RATE_LIMIT_TOKENS_PER_MINUTE: envInt(1_000_000, { min: 0 }),
  RATE_LIMIT_TOKEN_BURST: envInt(0, { min: 0 }),
  /** Completion tokens reserved for a request that sets no max_tokens. */
  RATE_LIMIT_DEFAULT_MAX_TOKENS: envInt(1024, { min: 1 }),
  DAILY_BUDGET_USD: z.coerce.number().min(0).default(0),
  MONTHLY_BUDGET_USD: z.coerce.number().min(0).default(0),
  /** Jobs a tenant may have queued + running at once. */
  TENANT_MAX_ACTIVE_JOBS: envInt(1000, { min: 0 }),
  /** Past this many jobs waiting in a priority tier's queue, submissions to it get 503 (backpressure). */
  MAX_QUEUE_DEPTH: envInt(100_000, { min: 0 }),
  /** How long a measured queue depth is reused before asking Redis again. */
  QUEUE_DEPTH_CHECK_MS: envDuration(250),
  /** The spend-rate alarm: trip when a minute's spend passes this multiple of the key's baseline (0: off). */
  SPEND_ALARM_MULTIPLE: z.coerce.number().min(0).default(10),
  /** The least baseline, USD per minute, so a quiet key does not trip on its first busy minute. */
  SPEND_ALARM_FLOOR_USD_PER_MINUTE: z.coerce.number().min(0).default(0.5),
  SPEND_ALARM_DURATION_MS: envDuration(15 * 60_000),
});
export type LimitsEnv = z.infer<typeof limitsEnvSchema>;

/** A key's own limits as stored: null takes the default. */
export interface StoredLimits {
  requestsPerMinute: number | null;
  requestBurst: number | null;
  tokensPerMinute: number | null;
  tokenBurst: number | null;
  dailyBudgetUsd: number | null;
  monthlyBudgetUsd: number | null;
}

export function effectiveLimits(
  env: LimitsEnv,
  own: StoredLimits,
  tenantMaxActiveJobs: number | null,
): EffectiveLimits {
  return {
    requestsPerMinute: own.requestsPerMinute ?? env.RATE_LIMIT_REQUESTS_PER_MINUTE,
    requestBurst: own.requestBurst ?? env.RATE_LIMIT_REQUEST_BURST,
    tokensPerMinute: own.tokensPerMinute ?? env.RATE_LIMIT_TOKENS_PER_MINUTE,
    tokenBurst: own.tokenBurst ?? env.RATE_LIMIT_TOKEN_BURST,
    dailyBudgetMicros: toMicros(own.dailyBudgetUsd ?? env.DAILY_BUDGET_USD),
    monthlyBudgetMicros: toMicros(own.monthlyBudgetUsd ?? env.MONTHLY_BUDGET_USD),
    maxActiveJobs: tenantMaxActiveJobs ?? env.TENANT_MAX_ACTIVE_JOBS,
  };
}

export function createKeyLimiter(
  redis: ConstructorParameters<typeof KeyLimiter>[0],
  prefix: string,
  env: LimitsEnv,
) {
  return new KeyLimiter(redis, {
    prefix,
    alarm: {
      multiple: env.SPEND_ALARM_MULTIPLE,
      floorMicrosPerMinute: toMicros(env.SPEND_ALARM_FLOOR_USD_PER_MINUTE),
      durationMs: env.SPEND_ALARM_DURATION_MS,
    },
  });
}

const usd = (micros: number) => `$${(micros / 1e6).toFixed(6).replace(/\.?0+$/, '')}`;
const seconds = (ms: number) => String(Math.max(1, Math.ceil(ms / 1000)));

/** The answer to a refused admission: 401 for a revoked key, else 429 with what to do about it. */
export function refusal(
  decision: Extract<Decision, { admitted: false }>,
  limits: EffectiveLimits,
  request: { tokens: number; costMicros: number },
): HttpError {
  const headers = rateLimitHeaders(decision.state);
  const retry = { ...headers, 'Retry-After': seconds(decision.retryAfterMs) };
  const { state } = decision;
  switch (decision.reason) {
    case 'revoked':
      return new HttpError(401, 'unauthorized', 'invalid or revoked API key', {
        headers: { 'WWW-Authenticate': 'Bearer realm="llmq"' },
      });
    case 'alarm':
      return new HttpError(
        429,
        'spend_alarm',
        "this key's spend per minute spiked past its alarm threshold; new work is refused until the alarm expires or an operator clears it",
        { headers: retry },
      );
    case 'budget_day':
    case 'budget_month': {
      const day = decision.reason === 'budget_day';
      const cap = day ? limits.dailyBudgetMicros : limits.monthlyBudgetMicros;
      const spent = day ? state.daySpentMicros : state.monthSpentMicros;
      return new HttpError(
        429,
        'budget_exceeded',
        `the ${day ? 'daily' : 'monthly'} budget of ${usd(cap)} would be exceeded: ${usd(spent)} spent or reserved, this request may cost up to ${usd(request.costMicros)}`,
        { headers: retry },
      );
    }
    case 'concurrency':
      return new HttpError(
        429,
        'too_many_active_jobs',
        `the tenant has ${state.activeJobs} jobs queued or running, its limit is ${limits.maxActiveJobs}`,
        { headers: retry },
      );
    case 'requests':
      return new HttpError(
        429,
        'rate_limit_exceeded',
        `request rate limit reached (${limits.requestsPerMinute} per minute, bursts of ${state.requests?.capacity ?? 0}); retry after ${seconds(decision.retryAfterMs)} s`,
        { headers: retry },
      );
    case 'tokens':
      if (decision.retryAfterMs < 0) {
        return new HttpError(
          429,
          'request_too_large',
          `this request reserves ${request.tokens} tokens (prompt + max_tokens), more than the key's token bucket holds (${state.tokens?.capacity ?? 0}); lower max_tokens or shorten the prompt`,
          { headers: { ...headers, 'x-should-retry': 'false' } },
        );
      }
      return new HttpError(
        429,
        'rate_limit_exceeded',
        `token rate limit reached (${limits.tokensPerMinute} per minute); this request reserves ${request.tokens} tokens, ${state.tokens?.remaining ?? 0} are left; retry after ${seconds(decision.retryAfterMs)} s`,
        { headers: retry },
      );
  }
}
