import type { Pool } from 'pg';

/** How a job was answered, as far as upstream calls go. */
export type CacheStatus = 'miss' | 'exact' | 'semantic' | 'coalesced';

/** One upstream call: what a provider backend was asked and how it answered. */
export interface AttemptEntry {
  jobId: string;
  model: string;
  backendId: string;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  latencyMs: number;
  ttftMs: number | null;
  /** `ok`, or the error code of the failed call. */
  outcome: string;
}

/** What a finished job is charged: one entry per job, ever. */
export interface JobCharge {
  jobId: string;
  model: string;
  backendId: string | null;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
  latencyMs: number | null;
  ttftMs: number | null;
  cacheStatus: CacheStatus;
  outcome: 'completed' | 'failed' | 'cancelled';
}

export interface UsageRow {
  /** UTC day, YYYY-MM-DD. */
  day: string;
  model: string;
  jobs: number;
  completed: number;
  cacheHits: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
}

const COLUMNS = `kind, job_id, api_key_id, tenant_id, model, backend_id, prompt_tokens, completion_tokens,
  cost_usd, latency_ms, ttft_ms, cache_status, outcome`;
const int = (n: number | null) => (n === null ? null : Math.max(0, Math.round(n)));

/**
 * The usage ledger. The key and tenant of every entry come from the job row, so a writer needs
 * only the job id, and an entry can never be charged to another tenant than its job's.
 */
export class UsageLedger {
  constructor(private readonly pool: Pool) {}

  /** Records upstream calls (any number of runs of a job may record theirs). */
  async recordAttempts(entries: AttemptEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const values: unknown[] = [];
    const rows = entries.map((e) => {
      const base = values.length;
      values.push(
        e.jobId,
        e.model,
        e.backendId,
        int(e.promptTokens),
        int(e.completionTokens),
        e.costUsd,
        int(e.latencyMs),
        int(e.ttftMs),
        e.outcome.slice(0, 100),
      );
      const p = (i: number) => `$${base + i}`;
      return `(${p(1)}::uuid, ${p(2)}, ${p(3)}, ${p(4)}::int, ${p(5)}::int, ${p(6)}::numeric, ${p(7)}::int, ${p(8)}::int, ${p(9)})`;
    });
    await this.pool.query(
      `INSERT INTO usage_ledger (${COLUMNS})
       SELECT 'attempt', j.id, j.api_key_id, j.tenant_id, v.model, v.backend, v.pt, v.ct, v.cost, v.latency, v.ttft, 'miss', v.outcome
       FROM (VALUES ${rows.join(', ')}) AS v(job_id, model, backend, pt, ct, cost, latency, ttft, outcome)
       JOIN jobs j ON j.id = v.job_id`,
      values,
    );
  }

  /**
   * Charges a finished job, once: returns true for the call that wrote the entry, false when the
   * job was charged already (a second run, a repeated cancel), so the caller settles budgets once.
   */
  async chargeJob(c: JobCharge): Promise<{ charged: boolean; apiKeyId: string | null }> {
    const { rows } = await this.pool.query<{ api_key_id: string | null }>(
      `INSERT INTO usage_ledger (${COLUMNS})
       SELECT 'job', j.id, j.api_key_id, j.tenant_id, $2, $3, $4, $5, $6, $7, $8, $9, $10
       FROM jobs j WHERE j.id = $1
       ON CONFLICT (job_id) WHERE kind = 'job' DO NOTHING
       RETURNING api_key_id`,
      [
        c.jobId,
        c.model,
        c.backendId,
        int(c.promptTokens),
        int(c.completionTokens),
        c.costUsd,
        int(c.latencyMs),
        int(c.ttftMs),
        c.cacheStatus,
        c.outcome,
      ],
    );
    const row = rows[0];
    return row ? { charged: true, apiKeyId: row.api_key_id } : { charged: false, apiKeyId: null };
  }

  /** A key's charged usage by UTC day and model, days in [from, to] (YYYY-MM-DD), newest first. */
  async byDayAndModel(apiKeyId: string, from: string, to: string): Promise<UsageRow[]> {
    const { rows } = await this.pool.query<{
      day: string;
      model: string;
      jobs: string;
      completed: string;
      cache_hits: string;
      prompt_tokens: string;
      completion_tokens: string;
      cost_usd: string;
    }>(
      `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, model,
              count(*) AS jobs,
              count(*) FILTER (WHERE outcome = 'completed') AS completed,
              count(*) FILTER (WHERE cache_status IN ('exact', 'semantic')) AS cache_hits,
              coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
              coalesce(sum(completion_tokens), 0) AS completion_tokens,
              coalesce(sum(cost_usd), 0) AS cost_usd
       FROM usage_ledger
       WHERE kind = 'job' AND api_key_id = $1
         AND created_at >= ($2::date AT TIME ZONE 'UTC') AND created_at < (($3::date + 1) AT TIME ZONE 'UTC')
       GROUP BY 1, 2 ORDER BY 1 DESC, 2`,
      [apiKeyId, from, to],
    );
    return rows.map((r) => ({
      day: r.day,
      model: r.model,
      jobs: Number(r.jobs),
      completed: Number(r.completed),
      cacheHits: Number(r.cache_hits),
      promptTokens: Number(r.prompt_tokens),
      completionTokens: Number(r.completion_tokens),
      costUsd: Number(r.cost_usd),
    }));
  }
}
