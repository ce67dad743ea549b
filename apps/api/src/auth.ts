import { hashApiKey, type ApiKeyRecord, type ApiKeyRepository } from '@llmq/db';
import { limiterKeys } from '@llmq/rate-limit';
import type { Redis } from '@llmq/queue';
import type { RequestHandler } from 'express';
import { HttpError } from './errors';

export interface Principal {
  tenantId: string;
  apiKeyId: string;
  record: ApiKeyRecord;
}

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

export interface AuthOptions {
  /** How long a verified key (and its limits) is trusted without asking Postgres again. @defaultValue 5000 */
  cacheMs?: number;
  /** @defaultValue 10000 */
  cacheSize?: number;
}

/**
 * Bearer API keys. Keys are looked up by their SHA-256 hash; a small in-process cache (keyed by
 * the hash, never the key) keeps Postgres off the hot path. Revocation does not wait for the
 * cache: see {@link refuseRevoked} and the limiter's admission script, which check the Redis
 * marker a revocation writes.
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
    req.principal = { tenantId: entry.record.tenantId, apiKeyId: entry.record.id, record: entry.record };
    next();
  };
}

/**
 * Refuses a key revoked since the auth cache verified it, by the marker every revocation writes
 * to Redis, so a revoked key stops working at once on every API process. While Redis is
 * unreachable, Postgres answers instead. (Submissions skip this: the admission script checks the
 * same marker in the call it makes anyway.)
 */
export function refuseRevoked(redis: Redis, apiKeys: ApiKeyRepository, prefix: string): RequestHandler {
  return async (req, _res, next) => {
    const { tenantId, apiKeyId } = req.principal!;
    const fromPostgres = async () => (await apiKeys.get(apiKeyId))?.revokedAt != null;
    const revoked =
      redis.status === 'ready'
        ? await redis
            .exists(limiterKeys.revoked(prefix, tenantId, apiKeyId))
            .then((n) => n === 1, fromPostgres)
        : await fromPostgres();
    if (revoked) throw unauthorized('invalid or revoked API key');
    next();
  };
}

function unauthorized(detail: string): HttpError {
  return new HttpError(401, 'unauthorized', detail, {
    headers: { 'WWW-Authenticate': 'Bearer realm="llmq"' },
  });
}
