import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Pool } from 'pg';

/**
 * A key's own limits and budgets. `null` takes the configured default; `0` means no limit.
 * Buckets refill at the per-minute rate and hold `burst` (0: the per-minute rate).
 */
export interface KeyLimits {
  requestsPerMinute: number | null;
  requestBurst: number | null;
  tokensPerMinute: number | null;
  tokenBurst: number | null;
  dailyBudgetUsd: number | null;
  monthlyBudgetUsd: number | null;
}

export interface ApiKeyRecord {
  id: string;
  tenantId: string;
  name: string | null;
  keyPrefix: string;
  createdAt: Date;
  revokedAt: Date | null;
  limits: KeyLimits;
  /** The tenant's own cap on jobs queued + running at once; null takes the default. */
  tenantMaxActiveJobs: number | null;
}

export interface TenantLimits {
  tenantId: string;
  /** Jobs queued + running at once; null takes the configured default, 0 means no limit. */
  maxActiveJobs: number | null;
  /** When the tenant's limits were last set; null when they never were. */
  updatedAt: Date | null;
}

export interface ListKeysOptions {
  tenantId?: string;
  /** @defaultValue false */
  includeRevoked?: boolean;
  /** @defaultValue 100 (at most {@link MAX_LIST_LIMIT}) */
  limit?: number;
  /** The id of the last key of the previous page. */
  after?: string;
}

/**
 * The largest values the repository accepts. Generous for any real deployment, and small enough
 * that a typo (an extra few zeros) is refused rather than silently meaning "no limit".
 */
export const KEY_LIMIT_MAXIMA: Readonly<Record<keyof KeyLimits, number>> = {
  requestsPerMinute: 10_000_000,
  requestBurst: 10_000_000,
  tokensPerMinute: 1_000_000_000,
  tokenBurst: 1_000_000_000,
  dailyBudgetUsd: 10_000_000,
  monthlyBudgetUsd: 10_000_000,
};
export const MAX_ACTIVE_JOBS_MAXIMUM = 10_000_000;
export const MAX_LIST_LIMIT = 1000;
export const KEY_NAME_MAX_LENGTH = 128;

const LIMIT_FIELDS = Object.keys(KEY_LIMIT_MAXIMA) as (keyof KeyLimits)[];
const USD_FIELDS = new Set<keyof KeyLimits>(['dailyBudgetUsd', 'monthlyBudgetUsd']);
const COLUMN: Record<keyof KeyLimits, string> = {
  requestsPerMinute: 'requests_per_minute',
  requestBurst: 'request_burst',
  tokensPerMinute: 'tokens_per_minute',
  tokenBurst: 'token_burst',
  dailyBudgetUsd: 'daily_budget_usd',
  monthlyBudgetUsd: 'monthly_budget_usd',
};

const KEY_PREFIX = 'llmq_';
const TENANT = /^[A-Za-z0-9._-]{1,64}$/;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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

export function isValidTenantId(tenantId: string): boolean {
  return TENANT.test(tenantId);
}

export function isApiKeyId(id: string): boolean {
  return UUID.test(id);
}

function checkTenant(tenantId: string): void {
  if (typeof tenantId !== 'string' || !TENANT.test(tenantId)) {
    throw new RangeError('tenant names are 1-64 letters, digits, dots, dashes or underscores');
  }
}

function checkId(id: string): void {
  if (typeof id !== 'string' || !UUID.test(id)) throw new RangeError(`api key ids are UUIDs, not "${id}"`);
}

function checkName(name: string | null): void {
  if (name === null) return;
  if (
    typeof name !== 'string' ||
    name.length < 1 ||
    name.length > KEY_NAME_MAX_LENGTH ||
    CONTROL_CHARS.test(name)
  ) {
    throw new RangeError(`key names are 1-${KEY_NAME_MAX_LENGTH} characters, without control characters`);
  }
}

/** True for a finite, non-negative USD amount with at most 6 decimals (what numeric(14, 6) holds exactly). */
export function isUsdAmount(value: number): boolean {
  return Number.isFinite(value) && value >= 0 && Number(value.toFixed(6)) === value;
}

/** Checks a (partial) set of limits; throws RangeError naming the first bad field. */
export function validateKeyLimits(limits: Partial<KeyLimits>): void {
  for (const [field, value] of Object.entries(limits) as [string, unknown][]) {
    if (!(field in KEY_LIMIT_MAXIMA)) throw new RangeError(`unknown limit "${field}"`);
    if (value === null || value === undefined) continue;
    const name = field as keyof KeyLimits;
    const max = KEY_LIMIT_MAXIMA[name];
    if (USD_FIELDS.has(name)) {
      if (typeof value !== 'number' || !isUsdAmount(value) || value > max) {
        throw new RangeError(`${field} is a USD amount from 0 to ${max} with at most 6 decimals`);
      }
    } else if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) {
      throw new RangeError(`${field} is a whole number from 0 to ${max}`);
    }
  }
}

function checkMaxActiveJobs(value: number | null): void {
  if (value === null) return;
  if (
    typeof value !== 'number' ||
    !Number.isSafeInteger(value) ||
    value < 0 ||
    value > MAX_ACTIVE_JOBS_MAXIMUM
  ) {
    throw new RangeError(`maxActiveJobs is a whole number from 0 to ${MAX_ACTIVE_JOBS_MAXIMUM}`);
  }
}

/** The SQL parameter of a limit: numeric budgets go as exact decimal strings. */
function param(field: keyof KeyLimits, value: number | null): number | string | null {
  if (value === null) return null;
  return USD_FIELDS.has(field) ? value.toFixed(6) : value;
}

interface Row {
  id: string;
  tenant_id: string;
  name: string | null;
  key_prefix: string;
  created_at: Date;
  revoked_at: Date | null;
  requests_per_minute: number | null;
  request_burst: number | null;
  tokens_per_minute: number | null;
  token_burst: number | null;
  /** numeric: pg returns it as a string, to keep every digit. */
  daily_budget_usd: string | null;
  monthly_budget_usd: string | null;
  max_active_jobs: number | null;
}

const KEY_COLUMNS = `k.id, k.tenant_id, k.name, k.key_prefix, k.created_at, k.revoked_at,
  k.requests_per_minute, k.request_burst, k.tokens_per_minute, k.token_burst,
  k.daily_budget_usd, k.monthly_budget_usd, t.max_active_jobs`;
const SELECT = `SELECT ${KEY_COLUMNS} FROM api_keys k LEFT JOIN tenant_limits t ON t.tenant_id = k.tenant_id`;
/** A data-modifying CTE `k` joined to the tenant's limits, so writes return whole records too. */
const FROM_CTE = `SELECT ${KEY_COLUMNS} FROM k LEFT JOIN tenant_limits t ON t.tenant_id = k.tenant_id`;

const usd = (v: string | null) => (v === null ? null : Number(v));

function toRecord(row: Row): ApiKeyRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    keyPrefix: row.key_prefix,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
    limits: {
      requestsPerMinute: row.requests_per_minute,
      requestBurst: row.request_burst,
      tokensPerMinute: row.tokens_per_minute,
      tokenBurst: row.token_burst,
      dailyBudgetUsd: usd(row.daily_budget_usd),
      monthlyBudgetUsd: usd(row.monthly_budget_usd),
    },
    tenantMaxActiveJobs: row.max_active_jobs,
  };
}

export class ApiKeyRepository {
  constructor(private readonly pool: Pool) {}

  /**
   * Creates a key for a tenant, with its own limits (unset ones take the defaults). The
   * plaintext key is returned once and never stored.
   */
  async create(
    tenantId: string,
    name: string | null = null,
    limits: Partial<KeyLimits> = {},
  ): Promise<{ key: string; record: ApiKeyRecord }> {
    checkTenant(tenantId);
    checkName(name);
    validateKeyLimits(limits);
    const key = generateApiKey();
    const { rows } = await this.pool.query<Row>(
      `WITH k AS (
         INSERT INTO api_keys (id, tenant_id, name, key_hash, key_prefix, ${LIMIT_FIELDS.map((f) => COLUMN[f]).join(', ')})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *)
       ${FROM_CTE}`,
      [
        randomUUID(),
        tenantId,
        name,
        hashApiKey(key),
        key.slice(0, KEY_PREFIX.length + 6),
        ...LIMIT_FIELDS.map((f) => param(f, limits[f] ?? null)),
      ],
    );
    return { key, record: toRecord(rows[0] as Row) };
  }

  /** The active (not revoked) key with this plaintext, with its limits, or null. */
  async findActive(key: string): Promise<ApiKeyRecord | null> {
    if (!looksLikeApiKey(key)) return null;
    const { rows } = await this.pool.query<Row>(`${SELECT} WHERE k.key_hash = $1 AND k.revoked_at IS NULL`, [
      hashApiKey(key),
    ]);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** Any key by id, revoked or not. */
  async get(id: string): Promise<ApiKeyRecord | null> {
    checkId(id);
    const { rows } = await this.pool.query<Row>(`${SELECT} WHERE k.id = $1`, [id]);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** Keys in creation order (oldest first), a page at a time: pass the last id as `after`. */
  async list(options: ListKeysOptions = {}): Promise<ApiKeyRecord[]> {
    const limit = options.limit ?? 100;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw new RangeError(`limit is a whole number from 1 to ${MAX_LIST_LIMIT}`);
    }
    const where: string[] = [];
    const params: unknown[] = [];
    if (options.tenantId !== undefined) {
      checkTenant(options.tenantId);
      params.push(options.tenantId);
      where.push(`k.tenant_id = $${params.length}`);
    }
    if (!options.includeRevoked) where.push('k.revoked_at IS NULL');
    if (options.after !== undefined) {
      checkId(options.after);
      params.push(options.after);
      // An unknown cursor matches nothing (a NULL comparison): an empty page, not a restart.
      where.push(`(k.created_at, k.id) > (SELECT created_at, id FROM api_keys WHERE id = $${params.length})`);
    }
    params.push(limit);
    const { rows } = await this.pool.query<Row>(
      `${SELECT} ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY k.created_at, k.id LIMIT $${params.length}`,
      params,
    );
    return rows.map(toRecord);
  }

  /**
   * Changes a key's name and limits. Fields left out keep their value; a limit set to null goes
   * back to the default. Null when no key has this id.
   */
  async update(
    id: string,
    changes: { name?: string | null; limits?: Partial<KeyLimits> },
  ): Promise<ApiKeyRecord | null> {
    checkId(id);
    const sets: string[] = [];
    const params: unknown[] = [id];
    if (changes.name !== undefined) {
      checkName(changes.name);
      params.push(changes.name);
      sets.push(`name = $${params.length}`);
    }
    const limits = changes.limits ?? {};
    validateKeyLimits(limits);
    for (const field of LIMIT_FIELDS) {
      const value = limits[field];
      if (value === undefined) continue;
      params.push(param(field, value));
      sets.push(`${COLUMN[field]} = $${params.length}`);
    }
    if (sets.length === 0) return this.get(id);
    const { rows } = await this.pool.query<Row>(
      `WITH k AS (UPDATE api_keys SET ${sets.join(', ')} WHERE id = $1 RETURNING *) ${FROM_CTE}`,
      params,
    );
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** {@link update} of the limits alone. */
  updateLimits(id: string, patch: Partial<KeyLimits>): Promise<ApiKeyRecord | null> {
    return this.update(id, { limits: patch });
  }

  /**
   * Revokes a key: findActive no longer returns it. Idempotent: revoking again keeps the first
   * revocation time. Null when no key has this id. Callers should also mark the key revoked in
   * Redis (`markKeyRevoked` of @llmq/rate-limit), so API processes stop trusting cached copies.
   */
  async revoke(id: string): Promise<ApiKeyRecord | null> {
    checkId(id);
    const { rows } = await this.pool.query<Row>(
      `WITH k AS (UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 RETURNING *)
       ${FROM_CTE}`,
      [id],
    );
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** Sets a tenant's own limits (null: back to the default). */
  async setTenantLimits(tenantId: string, limits: { maxActiveJobs: number | null }): Promise<TenantLimits> {
    checkTenant(tenantId);
    checkMaxActiveJobs(limits.maxActiveJobs);
    const { rows } = await this.pool.query<{ max_active_jobs: number | null; updated_at: Date }>(
      `INSERT INTO tenant_limits (tenant_id, max_active_jobs) VALUES ($1, $2)
       ON CONFLICT (tenant_id) DO UPDATE SET max_active_jobs = EXCLUDED.max_active_jobs, updated_at = now()
       RETURNING max_active_jobs, updated_at`,
      [tenantId, limits.maxActiveJobs],
    );
    const row = rows[0]!;
    return { tenantId, maxActiveJobs: row.max_active_jobs, updatedAt: row.updated_at };
  }

  /** A tenant's own limits; all null (defaults) when none were ever set. */
  async getTenantLimits(tenantId: string): Promise<TenantLimits> {
    checkTenant(tenantId);
    const { rows } = await this.pool.query<{ max_active_jobs: number | null; updated_at: Date }>(
      'SELECT max_active_jobs, updated_at FROM tenant_limits WHERE tenant_id = $1',
      [tenantId],
    );
    const row = rows[0];
    return { tenantId, maxActiveJobs: row?.max_active_jobs ?? null, updatedAt: row?.updated_at ?? null };
  }
}
