import type { BucketState, LimitState } from './limiter';

/** OpenAI's duration format of `x-ratelimit-reset-*`: "20ms", "1.5s", "6m0s". */
export function openAiDuration(ms: number): string {
  const t = Math.max(0, Math.ceil(ms));
  if (t < 1000) return `${t}ms`;
  if (t < 60_000) return `${Number((t / 1000).toFixed(3))}s`;
  const minutes = Math.floor(t / 60_000);
  const seconds = Math.round((t % 60_000) / 1000);
  return seconds === 60 ? `${minutes + 1}m0s` : `${minutes}m${seconds}s`;
}

/**
 * The rate-limit headers of an answer, in both dialects clients know:
 * - OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`;
 * - the IETF draft's structured fields (draft-ietf-httpapi-ratelimit-headers-10):
 *   `RateLimit-Policy: "requests";q=<capacity>;w=<seconds to refill it>, "tokens";q=…;w=…;qu="tokens"`
 *   and `RateLimit: "requests";r=<remaining>;t=<seconds until full>, "tokens";r=…;t=…`.
 * Buckets without a limit are left out; with no limit at all there are no headers.
 */
export function rateLimitHeaders(state: LimitState): Record<string, string> {
  const headers: Record<string, string> = {};
  const policies: string[] = [];
  const current: string[] = [];
  const add = (name: 'requests' | 'tokens', b: BucketState | null) => {
    if (!b) return;
    headers[`x-ratelimit-limit-${name}`] = String(b.capacity);
    headers[`x-ratelimit-remaining-${name}`] = String(b.remaining);
    headers[`x-ratelimit-reset-${name}`] = openAiDuration(b.resetMs);
    const window = Math.max(1, Math.ceil((b.capacity * 60) / b.perMinute));
    policies.push(`"${name}";q=${b.capacity};w=${window}${name === 'tokens' ? ';qu="tokens"' : ''}`);
    current.push(`"${name}";r=${b.remaining};t=${Math.ceil(b.resetMs / 1000)}`);
  };
  add('requests', state.requests);
  add('tokens', state.tokens);
  if (policies.length > 0) {
    headers['RateLimit-Policy'] = policies.join(', ');
    headers.RateLimit = current.join(', ');
  }
  return headers;
}
