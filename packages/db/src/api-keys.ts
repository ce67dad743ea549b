import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Pool } from 'pg';

export interface ApiKeyRecord {
  id: string;
  tenantId: string;
  name: string | null;
  keyPrefix: string;
  createdAt: Date;
  revokedAt: Date | null;
}

const KEY_PREFIX = 'llmq_';

/**
 * Keys carry 192 random bits, so a plain SHA-256 is the right hash at rest: a slow password hash
 * buys nothing against a brute force of 2^192 and would cost every request a KDF.
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(24).toString('base64url');
}

/** Cheap shape check before any hashing or database work. */
export function looksLikeApiKey(key: string): boolean {
  return key.length === KEY_PREFIX.length + 32 && key.startsWith(KEY_PREFIX) && /^[A-Za-z0-9_-]+$/.test(key);
}

interface Row {
  id: string;
  tenant_id: string;
  name: string | null;
  key_prefix: string;
  created_at: Date;
  revoked_at: Date | null;
}

function toRecord(row: Row): ApiKeyRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    keyPrefix: row.key_prefix,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
  };
}

export class ApiKeyRepository {
  constructor(private readonly pool: Pool) {}

  /** Creates a key for a tenant. The plaintext key is returned once and never stored. */
  async create(tenantId: string, name: string | null = null): Promise<{ key: string; record: ApiKeyRecord }> {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(tenantId)) {
      throw new RangeError('tenant names are 1-64 letters, digits, dots, dashes or underscores');
    }
    const key = generateApiKey();
    const { rows } = await this.pool.query<Row>(
      `INSERT INTO api_keys (id, tenant_id, name, key_hash, key_prefix) VALUES ($1, $2, $3, $4, $5)
       RETURNING id, tenant_id, name, key_prefix, created_at, revoked_at`,
      [randomUUID(), tenantId, name, hashApiKey(key), key.slice(0, KEY_PREFIX.length + 6)],
    );
    return { key, record: toRecord(rows[0] as Row) };
  }

  /** The active (not revoked) key with this plaintext, or null. */
  async findActive(key: string): Promise<ApiKeyRecord | null> {
    if (!looksLikeApiKey(key)) return null;
    const { rows } = await this.pool.query<Row>(
      `SELECT id, tenant_id, name, key_prefix, created_at, revoked_at FROM api_keys
       WHERE key_hash = $1 AND revoked_at IS NULL`,
      [hashApiKey(key)],
    );
    return rows[0] ? toRecord(rows[0]) : null;
  }
}
