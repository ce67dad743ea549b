/**
 * `Retry-After` in all its forms: `retry-after-ms` (OpenAI, milliseconds), `retry-after` as
 * seconds, or as an HTTP date. Returns milliseconds from `now`, or undefined.
 */
export function parseRetryAfter(
  headers: { get(name: string): string | null },
  now = Date.now(),
): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms !== null && /^\d+(\.\d+)?$/.test(ms.trim())) return Math.ceil(Number(ms));
  const value = headers.get('retry-after');
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.ceil(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export interface BackoffOptions {
  /** @defaultValue 250 */
  baseMs?: number;
  /** @defaultValue 8000 */
  capMs?: number;
}

/**
 * Exponential backoff with full jitter (a uniform draw in [0, min(cap, base·2^n)]): retries of
 * many workers spread out instead of arriving together.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random = Math.random): number {
  const base = options.baseMs ?? 250;
  const cap = options.capMs ?? 8000;
  return Math.floor(random() * Math.min(cap, base * 2 ** Math.max(0, attempt)));
}

/** Sleeps unless the signal aborts first (then rejects with its reason). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
