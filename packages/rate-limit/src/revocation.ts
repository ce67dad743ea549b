import type { Redis } from 'ioredis';
import { limiterKeys } from './keys';

/**
 * How long a revocation marker lives. API processes trust a verified key for a few seconds
 * without asking Postgres (the auth cache); the marker only has to outlive that cache, after
 * which Postgres itself says the key is revoked. An hour leaves a wide margin.
 */
export const REVOCATION_MARKER_MS = 3_600_000;

/**
 * Marks a key revoked in Redis, where every API process checks it on every request, so a
 * revocation applies at once fleet-wide. Call it after the revocation is written to Postgres.
 */
export async function markKeyRevoked(
  redis: Redis,
  prefix: string,
  tenantId: string,
  keyId: string,
  ttlMs: number = REVOCATION_MARKER_MS,
): Promise<void> {
  await redis.set(limiterKeys.revoked(prefix, tenantId, keyId), '1', 'PX', ttlMs);
}
