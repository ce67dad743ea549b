/**
 * How a failed upstream attempt is handled, decided once, here:
 * - `retryable`: another attempt (maybe on another backend) may succeed: connection errors,
 *   timeouts, 408, 409, 5xx, a stream cut before any token.
 * - `rate_limited`: 429 (not quota): the backend is taken out of rotation for `retryAfterMs`.
 * - `fatal`: the request itself is wrong or not allowed: 400, 401, 403, 404, 422, quota
 *   exhausted, content policy. The job fails at once with the provider's reason.
 */
export type ErrorClass = 'retryable' | 'rate_limited' | 'fatal';

export interface ProviderErrorDetails {
  status?: number;
  retryAfterMs?: number;
  backendId?: string;
  /**
   * The provider's own error text, also part of the message. Providers may echo the request in
   * it (the prompt), so loggers scrub it (see @llmq/logging), while the job's error keeps it.
   */
  upstreamMessage?: string;
}

export class ProviderError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly errorClass: ErrorClass,
    readonly details: ProviderErrorDetails = {},
  ) {
    super(message);
    this.name = 'ProviderError';
  }

  get retryable(): boolean {
    return this.errorClass !== 'fatal';
  }
}

/** The stream broke after tokens reached the client: never retried, never a silent short result. */
export class StreamBrokenError extends Error {
  readonly code = 'upstream_stream_broken';
  constructor(
    readonly tokensSent: number,
    override readonly cause: ProviderError,
  ) {
    super(`the provider stream broke after ${tokensSent} token(s) were streamed: ${cause.message}`);
    this.name = 'StreamBrokenError';
  }
}

/**
 * No backend can take the request now (all open, cooling down after 429s, or over their fleet
 * limits), or the provider asked for a wait too long to sleep through in-process. The caller
 * should run the job again after `retryAfterMs` instead of failing it.
 */
export class RetryLaterError extends Error {
  readonly code = 'no_capacity';
  constructor(
    message: string,
    readonly retryAfterMs: number,
    readonly last?: ProviderError,
  ) {
    super(message);
    this.name = 'RetryLaterError';
  }
}

/** Every attempt failed; the job fails with the last provider error. */
export class AttemptsExhaustedError extends Error {
  constructor(
    readonly attempts: number,
    readonly last: ProviderError,
  ) {
    super(`${attempts} attempt(s) failed; last: ${last.message}`);
    this.name = 'AttemptsExhaustedError';
  }
}

const RETRYABLE_STATUS = new Set([408, 409, 500, 502, 503, 504, 529]);

/** Classifies an HTTP error answer from its status and body. */
export function classifyStatus(
  status: number,
  body: string,
  retryAfterMs: number | undefined,
  backendId: string,
): ProviderError {
  let upstreamMessage: string | undefined;
  let type = '';
  let code = '';
  try {
    const parsed = JSON.parse(body) as {
      error?: { message?: string; type?: string; code?: string } | string;
    };
    const e = typeof parsed.error === 'object' ? parsed.error : undefined;
    if (e?.message) upstreamMessage = e.message;
    else if (typeof parsed.error === 'string') upstreamMessage = parsed.error;
    type = e?.type ?? '';
    code = e?.code ?? '';
  } catch {
    // not JSON: the status says enough
  }
  const message = `provider answered ${status}${upstreamMessage ? `: ${upstreamMessage}` : ''}`;
  const details: ProviderErrorDetails = {
    status,
    backendId,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    ...(upstreamMessage ? { upstreamMessage } : {}),
  };
  if (status === 429) {
    // OpenAI signals an exhausted quota with a 429 that no wait will fix.
    if (code === 'insufficient_quota' || type === 'insufficient_quota' || /quota/i.test(code)) {
      return new ProviderError(message, 'upstream_quota_exhausted', 'fatal', details);
    }
    return new ProviderError(message, 'upstream_rate_limited', 'rate_limited', details);
  }
  if (/content[_ ]?(policy|filter)/i.test(`${code} ${type}`)) {
    return new ProviderError(message, 'upstream_content_policy', 'fatal', details);
  }
  if (RETRYABLE_STATUS.has(status) || status >= 500) {
    return new ProviderError(message, `upstream_${status}`, 'retryable', details);
  }
  return new ProviderError(message, `upstream_${status}`, 'fatal', details);
}
