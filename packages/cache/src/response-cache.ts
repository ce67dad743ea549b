import type { Usage } from '@llmq/contracts';
import type { Redis } from 'ioredis';
import type { Pool } from 'pg';

export interface CacheEntry {
  model: string;
  result: string;
  finishReason: string | null;
  usage: Usage | null;
  /** Epoch ms when the answer was produced. */
  createdAt: number;
}

export type CacheSource = 'redis' | 'postgres' | 'semantic';

export interface CacheHit {
  entry: CacheEntry;
  source: CacheSource;
  /** Cosine similarity of the matched prompt, for semantic hits. */
  similarity?: number;
}

export interface ResponseCacheOptions {
  redis: Redis;
  pool: Pool;
  /** @defaultValue "llmq" */
  prefix?: string;
  /** @defaultValue 3600 */
  redisTtlSeconds?: number;
  /** @defaultValue 604800 (7 days) */
  postgresTtlSeconds?: number;
  /** A layer slower than this counts as a miss. @defaultValue 250 */
  timeoutMs?: number;
  /** Told about every cache failure (they degrade to misses, never to failed requests). */
  onError?: (error: unknown, operation: string) => void;
}

/** Counters for metrics (the observability issue exports them). */
export interface CacheCounters {
  hits: Record<CacheSource, number>;
  misses: number;
  stores: number;
  errors: number;
  bytesStored: number;
}

class Timeout extends Error {}

interface EntryRow {
  model: string;
  result: string;
  finish_reason: string | null;
  usage: Usage | null;
  created_at: Date;
}

function toEntry(row: EntryRow): CacheEntry {
  return {
    model: row.model,
    result: row.result,
    finishReason: row.finish_reason,
    usage: row.usage,
    createdAt: row.created_at.getTime(),
  };
}

/**
 * Two layers of exact-match answers: Redis first (short TTL, may be an LRU Redis), then
 * Postgres (long TTL, survives Redis restarts); a Postgres hit backfills Redis. Only complete,
 * successful answers are ever stored (the callers decide that); any failure of a layer is a miss.
 */
export class ResponseCache {
  readonly counters: CacheCounters = {
    hits: { redis: 0, postgres: 0, semantic: 0 },
    misses: 0,
    stores: 0,
    errors: 0,
    bytesStored: 0,
  };
  private readonly prefix: string;
  private readonly redisTtl: number;
  private readonly postgresTtl: number;
  private readonly timeoutMs: number;

  constructor(private readonly o: ResponseCacheOptions) {
    this.prefix = o.prefix ?? 'llmq';
    this.redisTtl = o.redisTtlSeconds ?? 3600;
    this.postgresTtl = o.postgresTtlSeconds ?? 604_800;
    this.timeoutMs = o.timeoutMs ?? 250;
  }

  private redisKey(key: string): string {
    return `${this.prefix}:cache:${key}`;
  }

  async get(key: string, maxAgeSeconds: number | null = null): Promise<CacheHit | null> {
    const fresh = (e: CacheEntry) =>
      maxAgeSeconds === null || Date.now() - e.createdAt <= maxAgeSeconds * 1000;
    const fromRedis = await this.guard('get:redis', async () => {
      const raw = await this.o.redis.get(this.redisKey(key));
      return raw === null ? null : (JSON.parse(raw) as CacheEntry);
    });
    if (fromRedis && fresh(fromRedis)) {
      this.counters.hits.redis++;
      return { entry: fromRedis, source: 'redis' };
    }
    const row = await this.guard('get:postgres', async () => {
      const { rows } = await this.o.pool.query<{
        model: string;
        result: string;
        finish_reason: string | null;
        usage: Usage | null;
        created_at: Date;
        expires_at: Date;
      }>(
        `SELECT model, result, finish_reason, usage, created_at, expires_at FROM cache_entries
         WHERE key = $1 AND expires_at > now()`,
        [key],
      );
      return rows[0] ?? null;
    });
    if (row) {
      const entry = toEntry(row);
      if (fresh(entry)) {
        this.counters.hits.postgres++;
        const ttl = Math.min(this.redisTtl, Math.floor((row.expires_at.getTime() - Date.now()) / 1000));
        if (ttl > 0)
          void this.guard('backfill', () =>
            this.o.redis.set(this.redisKey(key), JSON.stringify(entry), 'EX', ttl),
          );
        return { entry, source: 'postgres' };
      }
    }
    this.counters.misses++;
    return null;
  }

  /**
   * The semantic layer: the closest earlier prompt of the same scope and model, if its cosine
   * similarity reaches `threshold`. Any failure is a miss.
   */
  async getSemantic(
    scope: string,
    model: string,
    embedding: number[],
    threshold: number,
    maxAgeSeconds: number | null = null,
  ): Promise<CacheHit | null> {
    const row = await this.guard('get:semantic', async () => {
      const { rows } = await this.o.pool.query<{
        similarity: number;
        model: string;
        result: string;
        finish_reason: string | null;
        usage: Usage | null;
        created_at: Date;
      }>(
        `SELECT 1 - (e.embedding <=> $1::vector) AS similarity, c.model, c.result, c.finish_reason, c.usage, c.created_at
         FROM cache_embeddings e JOIN cache_entries c USING (key)
         WHERE e.scope = $2 AND e.model = $3 AND c.expires_at > now()
         ORDER BY e.embedding <=> $1::vector LIMIT 1`,
        [`[${embedding.join(',')}]`, scope, model],
      );
      return rows[0] ?? null;
    });
    const similarity = row ? Number(row.similarity) : 0;
    if (!row || similarity < threshold) return null;
    const entry = toEntry(row);
    if (maxAgeSeconds !== null && Date.now() - entry.createdAt > maxAgeSeconds * 1000) return null;
    this.counters.hits.semantic++;
    return { entry, source: 'semantic', similarity };
  }

  /** Stores a complete answer in both layers (and its prompt embedding, if given); failures are counted and swallowed. */
  async set(key: string, scope: string, entry: CacheEntry, embedding?: number[]): Promise<void> {
    const json = JSON.stringify(entry);
    const [redis, postgres] = await Promise.all([
      this.guard('set:redis', () => this.o.redis.set(this.redisKey(key), json, 'EX', this.redisTtl)),
      this.guard('set:postgres', () =>
        this.o.pool.query(
          `INSERT INTO cache_entries (key, scope, model, result, finish_reason, usage, created_at, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7 / 1000.0), now() + make_interval(secs => $8))
           ON CONFLICT (key) DO UPDATE SET result = EXCLUDED.result, finish_reason = EXCLUDED.finish_reason,
             usage = EXCLUDED.usage, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at`,
          [
            key,
            scope,
            entry.model,
            entry.result,
            entry.finishReason,
            entry.usage ? JSON.stringify(entry.usage) : null,
            entry.createdAt,
            this.postgresTtl,
          ],
        ),
      ),
    ]);
    if (postgres !== null && embedding) {
      await this.guard('set:semantic', () =>
        this.o.pool.query(
          `INSERT INTO cache_embeddings (key, scope, model, embedding) VALUES ($1, $2, $3, $4::vector)
           ON CONFLICT (key) DO UPDATE SET embedding = EXCLUDED.embedding, created_at = now()`,
          [key, scope, entry.model, `[${embedding.join(',')}]`],
        ),
      );
    }
    if (redis !== null || postgres !== null) {
      this.counters.stores++;
      this.counters.bytesStored += Buffer.byteLength(json);
    }
  }

  /**
   * Invalidation: removes the entries matching every given filter from both layers; returns how
   * many. At least one filter is required.
   */
  async purge(filter: { key?: string; scope?: string; model?: string }): Promise<number> {
    const where: string[] = [];
    const params: string[] = [];
    if (filter.key !== undefined) where.push(`key = $${params.push(filter.key)}`);
    if (filter.scope !== undefined) where.push(`scope = $${params.push(filter.scope)}`);
    if (filter.model !== undefined) where.push(`model = $${params.push(filter.model)}`);
    if (where.length === 0) throw new RangeError('purge needs a key, a scope or a model');
    // Redis first, then Postgres: if Redis fails, nothing is deleted and a retry finds the keys again.
    const { rows } = await this.o.pool.query<{ key: string }>(
      `SELECT key FROM cache_entries WHERE ${where.join(' AND ')}`,
      params,
    );
    const doomed = new Set(rows.map((r) => r.key));
    // A key given outright may live in Redis alone (its Postgres write failed).
    if (filter.key !== undefined) doomed.add(filter.key);
    const redisKeys = [...doomed].map((k) => this.redisKey(k));
    for (let i = 0; i < redisKeys.length; i += 500) {
      await this.o.redis.del(...redisKeys.slice(i, i + 500));
    }
    const deleted = await this.o.pool.query(`DELETE FROM cache_entries WHERE key = ANY($1::text[])`, [
      rows.map((r) => r.key),
    ]);
    return deleted.rowCount ?? 0;
  }

  /** Deletes expired Postgres entries (Redis expires its own); returns how many. */
  async deleteExpired(limit = 1000): Promise<number> {
    const { rowCount } = await this.o.pool.query(
      `DELETE FROM cache_entries WHERE key IN (SELECT key FROM cache_entries WHERE expires_at <= now() LIMIT $1)`,
      [limit],
    );
    return rowCount ?? 0;
  }

  /** Runs a layer operation with a deadline; failure or timeout → null (a miss), counted. */
  private async guard<T>(operation: string, fn: () => Promise<T>): Promise<T | null> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        fn(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Timeout(`cache ${operation} took over ${this.timeoutMs} ms`)),
            this.timeoutMs,
          );
        }),
      ]);
    } catch (error) {
      this.counters.errors++;
      this.o.onError?.(error, operation);
      return null;
    } finally {
      clearTimeout(timer);
    }
  }
}
