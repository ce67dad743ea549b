/**
 * Per-request cache control, read from the request's `Cache-Control` header (RFC 9111 request
 * directives): `no-cache` (do not answer from the cache; the fresh answer is still stored),
 * `no-store` (do not store the answer), `only-if-cached` (answer from the cache or not at all),
 * `max-age=N` (accept only entries at most N seconds old).
 */
export interface CacheControl {
  read: boolean;
  store: boolean;
  onlyIfCached: boolean;
  maxAgeSeconds: number | null;
}

export class CacheControlError extends Error {}

export function parseCacheControl(header: string | undefined): CacheControl {
  const control: CacheControl = { read: true, store: true, onlyIfCached: false, maxAgeSeconds: null };
  if (!header) return control;
  for (const raw of header.split(',')) {
    const directive = raw.trim().toLowerCase();
    if (directive === '') continue;
    const [name, value] = directive.split('=', 2) as [string, string | undefined];
    switch (name) {
      case 'no-cache':
        control.read = false;
        break;
      case 'no-store':
        control.store = false;
        break;
      case 'only-if-cached':
        control.onlyIfCached = true;
        break;
      case 'max-age':
        if (value === undefined || !/^\d{1,10}$/.test(value)) {
          throw new CacheControlError('max-age takes a whole number of seconds');
        }
        control.maxAgeSeconds = Number(value);
        break;
      default:
        throw new CacheControlError(`unknown Cache-Control directive "${name}"`);
    }
  }
  if (control.onlyIfCached && !control.read)
    throw new CacheControlError('only-if-cached and no-cache contradict each other');
  return control;
}
