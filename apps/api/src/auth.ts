import { hashApiKey, type ApiKeyRecord, type ApiKeyRepository } from '@llmq/db';
import type { RequestHandler } from 'express';
import { HttpError } from './errors';

declare module 'express-serve-static-core' {
  interface Request {
    principal?: { tenantId: string; apiKeyId: string };
  }
}

export interface AuthOptions {
  /** How long a verified key is trusted without asking Postgres again. @defaultValue 5000 */
  cacheMs?: number;
  /** @defaultValue 10000 */
  cacheSize?: number;
}

/**
 * Bearer API keys. Keys are looked up by their SHA-256 hash; a small in-process cache (keyed by
 * the hash, never the key) keeps Postgres off the hot path.
 */
export function authenticate(apiKeys: ApiKeyRepository, options: AuthOptions = {}): RequestHandler {
  const cacheMs = options.cacheMs ?? 5000;
  const cacheSize = options.cacheSize ?? 10_000;
  const cache = new Map<string, { record: ApiKeyRecord; until: number }>();
  return async (req, _res, next) => {
    const header = req.headers.authorization;
    if (!header) throw unauthorized('missing Authorization header (expected "Bearer <api key>")');
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw unauthorized('Authorization header must be "Bearer <api key>"');
    const key = match[1] as string;
    const now = Date.now();
    const hash = hashApiKey(key);
    let entry = cache.get(hash);
    if (!entry || entry.until < now) {
      const record = await apiKeys.findActive(key);
      if (!record) throw unauthorized('invalid or revoked API key');
      if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string);
      entry = { record, until: now + cacheMs };
      cache.set(hash, entry);
    }
    req.principal = { tenantId: entry.record.tenantId, apiKeyId: entry.record.id };
    next();
  };
}

function unauthorized(detail: string): HttpError {
  return new HttpError(401, 'unauthorized', detail, {
    headers: { 'WWW-Authenticate': 'Bearer realm="llmq"' },
  });
}
