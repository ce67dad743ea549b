import type {
  GenerationSpec,
  JobError,
  JobEvent,
  JobStatus,
  Priority,
  SourceView,
  Usage,
} from '@llmq/contracts';
import type { Pool } from 'pg';
import { GroupCommitter } from './batcher';

export interface NewJob {
  id: string;
  tenantId: string;
  apiKeyId: string | null;
  spec: GenerationSpec;
  requestHash: string;
  idempotencyKey: string | null;
  metadata: Record<string, string> | null;
  /** The queue tier. @defaultValue "interactive" */
  priority?: Priority;
  /** Set for a job answered from the cache: it is recorded already completed, with its events. */
  completed?: { outcome: JobOutcome; events: JobEvent[] };
}

export type InsertOutcome =
  { created: true } | { created: false; existing: { id: string; requestHash: string; status: JobStatus } };

export interface JobRecord {
  id: string;
  tenantId: string;
  status: JobStatus;
  model: string;
  priority: Priority;
  spec: GenerationSpec;
  requestHash: string;
  metadata: Record<string, string> | null;
  attempts: number;
  result: string | null;
  finishReason: string | null;
  usage: Usage | null;
  error: JobError | null;
  events: JobEvent[] | null;
  servedModel: string | null;
  backendId: string | null;
  costUsd: number | null;
  sources: SourceView[] | null;
  createdAt: Date;
  startedAt: Date | null;
  completedAt: Date | null;
}

/** A job the reconciler may have to enqueue again. */
export interface UnfinishedJob {
  id: string;
  tenantId: string;
  spec: GenerationSpec;
  priority: Priority;
}

/** What a successful run stores. */
export interface JobOutcome {
  result: string;
  finishReason: string | null;
  usage: Usage | null;
  servedModel?: string | null;
  backendId?: string | null;
  costUsd?: number | null;
  /** The chunks a RAG answer was built from. */
  sources?: SourceView[] | null;
}

interface Row {
  id: string;
  tenant_id: string;
  status: JobStatus;
  model: string;
  priority: Priority;
  spec: GenerationSpec;
  request_hash: string;
  metadata: Record<string, string> | null;
  attempts: number;
  result: string | null;
  finish_reason: string | null;
  usage: Usage | null;
  error: JobError | null;
  events: JobEvent[] | null;
  served_model: string | null;
  backend_id: string | null;
  cost_usd: string | null;
  sources: SourceView[] | null;
  created_at: Date;
  started_at: Date | null;
  completed_at: Date | null;
}

const COLUMNS = `id, tenant_id, status, model, priority, spec, request_hash, metadata, attempts, result, finish_reason,
  usage, error, events, served_model, backend_id, cost_usd, sources, created_at, started_at, completed_at`;
const UNFINISHED = `status IN ('queued', 'in_progress')`;

function toRecord(r: Row): JobRecord {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    status: r.status,
    model: r.model,
    priority: r.priority,
    spec: r.spec,
    requestHash: r.request_hash,
    metadata: r.metadata,
    attempts: r.attempts,
    result: r.result,
    finishReason: r.finish_reason,
    usage: r.usage,
    error: r.error,
    events: r.events,
    servedModel: r.served_model,
    backendId: r.backend_id,
    // numeric arrives as a string (pg keeps its precision); cents of a millionth are fine as a number.
    costUsd: r.cost_usd === null ? null : Number(r.cost_usd),
    sources: r.sources,
    createdAt: r.created_at,
    startedAt: r.started_at,
    completedAt: r.completed_at,
  };
}

export interface JobRepositoryOptions {
  /** Largest multi-row insert. @defaultValue 256 */
  maxInsertBatch?: number;
}

export class JobRepository {
  private readonly inserts: GroupCommitter<NewJob, InsertOutcome>;

  constructor(
    private readonly pool: Pool,
    options: JobRepositoryOptions = {},
  ) {
    this.inserts = new GroupCommitter((jobs) => this.insertBatch(jobs), options.maxInsertBatch ?? 256);
  }

  /**
   * Records a new job durably. Concurrent calls are group-committed into multi-row inserts.
   * With an idempotency key already used by the tenant, nothing is written and the existing job
   * is returned for the caller to compare.
   */
  insert(job: NewJob): Promise<InsertOutcome> {
    return this.inserts.submit(job);
  }

  private async insertBatch(jobs: NewJob[]): Promise<InsertOutcome[]> {
    const values: unknown[] = [];
    const PER_ROW = 15;
    const tuples = jobs.map((j, i) => {
      const done = j.completed;
      values.push(
        j.id,
        j.tenantId,
        j.apiKeyId,
        done ? 'completed' : 'queued',
        j.spec.model,
        JSON.stringify(j.spec),
      );
      values.push(j.requestHash, j.idempotencyKey, j.metadata === null ? null : JSON.stringify(j.metadata));
      values.push(done?.outcome.result ?? null, done?.outcome.finishReason ?? null);
      values.push(done?.outcome.usage ? JSON.stringify(done.outcome.usage) : null);
      values.push(done ? JSON.stringify(done.events) : null, done?.outcome.servedModel ?? null);
      values.push(j.priority ?? 'interactive');
      const b = i * PER_ROW;
      const params = Array.from({ length: PER_ROW }, (_, k) => `$${b + k + 1}`);
      // A cached answer is complete on arrival: its timestamps say so.
      return `(${params.join(', ')}, CASE WHEN $${b + 4} = 'completed' THEN now() END, CASE WHEN $${b + 4} = 'completed' THEN now() END)`;
    });
    const { rows } = await this.pool.query<{ id: string }>(
      `INSERT INTO jobs (id, tenant_id, api_key_id, status, model, spec, request_hash, idempotency_key, metadata,
         result, finish_reason, usage, events, served_model, priority, started_at, completed_at)
       VALUES ${tuples.join(', ')}
       ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
       RETURNING id`,
      values,
    );
    const inserted = new Set(rows.map((r) => r.id));
    const conflicted = jobs.filter((j) => !inserted.has(j.id));
    const existing = new Map<string, { id: string; requestHash: string; status: JobStatus }>();
    if (conflicted.length > 0) {
      const found = await this.pool.query<{
        id: string;
        tenant_id: string;
        idempotency_key: string;
        request_hash: string;
        status: JobStatus;
      }>(
        `SELECT id, tenant_id, idempotency_key, request_hash, status FROM jobs
         WHERE (tenant_id, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
        [conflicted.map((j) => j.tenantId), conflicted.map((j) => j.idempotencyKey)],
      );
      for (const r of found.rows) {
        existing.set(`${r.tenant_id}\u0000${r.idempotency_key}`, {
          id: r.id,
          requestHash: r.request_hash,
          status: r.status,
        });
      }
    }
    return jobs.map((j): InsertOutcome => {
      if (inserted.has(j.id)) return { created: true };
      const hit = existing.get(`${j.tenantId}\u0000${j.idempotencyKey}`);
      if (!hit) throw new Error(`job ${j.id} was neither inserted nor found by its idempotency key`);
      return { created: false, existing: hit };
    });
  }

  /** A tenant's job. Another tenant's job is indistinguishable from a missing one. */
  /** The tenant's job submitted with this idempotency key, if any (what a replay answers with). */
  async findByIdempotencyKey(
    tenantId: string,
    idempotencyKey: string,
  ): Promise<{ id: string; requestHash: string; status: JobStatus } | null> {
    const { rows } = await this.pool.query<{ id: string; request_hash: string; status: JobStatus }>(
      `SELECT id, request_hash, status FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2`,
      [tenantId, idempotencyKey],
    );
    const r = rows[0];
    return r ? { id: r.id, requestHash: r.request_hash, status: r.status } : null;
  }

  async getForTenant(id: string, tenantId: string): Promise<JobRecord | null> {
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2`,
      [id, tenantId],
    );
    return rows[0] ? toRecord(rows[0]) : null;
  }

  async get(id: string): Promise<JobRecord | null> {
    const { rows } = await this.pool.query<Row>(`SELECT ${COLUMNS} FROM jobs WHERE id = $1`, [id]);
    return rows[0] ? toRecord(rows[0]) : null;
  }

  /** Marks an attempt as started; null when the job is already finished (cancelled, say). */
  async startAttempt(id: string): Promise<{ attempts: number } | null> {
    const { rows } = await this.pool.query<{ attempts: number }>(
      `UPDATE jobs SET status = 'in_progress', attempts = attempts + 1, started_at = coalesce(started_at, now()),
         updated_at = now()
       WHERE id = $1 AND ${UNFINISHED} RETURNING attempts`,
      [id],
    );
    return rows[0] ?? null;
  }

  /** When the job was accepted (for limits on how long it may wait for capacity). */
  async createdAt(id: string): Promise<Date | null> {
    const { rows } = await this.pool.query<{ created_at: Date }>(
      'SELECT created_at FROM jobs WHERE id = $1',
      [id],
    );
    return rows[0]?.created_at ?? null;
  }

  /** Puts a job that will be retried back to queued. */
  async requeue(id: string): Promise<void> {
    await this.pool.query(
      `UPDATE jobs SET status = 'queued', updated_at = now() WHERE id = $1 AND status = 'in_progress'`,
      [id],
    );
  }

  /**
   * Stores the result. Idempotent: only the first terminal write wins, so a job that ran twice
   * (a stalled worker that came back) still has one result. Returns whether this call won.
   */
  async complete(id: string, r: JobOutcome): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE jobs SET status = 'completed', result = $2, finish_reason = $3, usage = $4, error = NULL,
         served_model = $5, backend_id = $6, cost_usd = $7, sources = $8, completed_at = now(), updated_at = now()
       WHERE id = $1 AND ${UNFINISHED}`,
      [
        id,
        r.result,
        r.finishReason,
        r.usage === null ? null : JSON.stringify(r.usage),
        r.servedModel ?? null,
        r.backendId ?? null,
        r.costUsd ?? null,
        r.sources ? JSON.stringify(r.sources) : null,
      ],
    );
    return rowCount === 1;
  }

  async fail(id: string, error: JobError): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE jobs SET status = 'failed', error = $2, completed_at = now(), updated_at = now()
       WHERE id = $1 AND ${UNFINISHED}`,
      [id, JSON.stringify(error)],
    );
    return rowCount === 1;
  }

  /** Cancels an unfinished job of the tenant; returns the status it had, or null if nothing changed. */
  async cancel(id: string, tenantId: string): Promise<JobStatus | null> {
    const { rows } = await this.pool.query<{ previous: JobStatus }>(
      `UPDATE jobs j SET status = 'cancelled', completed_at = now(), updated_at = now()
       FROM (SELECT id, status AS previous FROM jobs WHERE id = $1 AND tenant_id = $2 FOR UPDATE) old
       WHERE j.id = old.id AND j.${UNFINISHED}
       RETURNING old.previous`,
      [id, tenantId],
    );
    return rows[0]?.previous ?? null;
  }

  /** Stores a finished job's event stream for replay. */
  async storeEvents(id: string, events: JobEvent[]): Promise<void> {
    await this.pool.query(`UPDATE jobs SET events = $2 WHERE id = $1`, [id, JSON.stringify(events)]);
  }

  /** Undoes an accepted-but-never-enqueued insert (the queue refused it), so no half-created job remains. */
  async deleteUnstarted(id: string): Promise<void> {
    await this.pool.query(`DELETE FROM jobs WHERE id = $1 AND status = 'queued' AND attempts = 0`, [id]);
  }

  /**
   * Unfinished jobs of one tier older than a cut-off, oldest first: candidates for the reconciler.
   */
  async findUnfinished(olderThan: Date, limit: number, priority: Priority): Promise<UnfinishedJob[]> {
    const { rows } = await this.pool.query<{
      id: string;
      tenant_id: string;
      spec: GenerationSpec;
      priority: Priority;
    }>(
      `SELECT id, tenant_id, spec, priority FROM jobs WHERE ${UNFINISHED} AND priority = $3 AND created_at < $1
       ORDER BY created_at LIMIT $2`,
      [olderThan, limit, priority],
    );
    return rows.map((r) => ({ id: r.id, tenantId: r.tenant_id, spec: r.spec, priority: r.priority }));
  }
}
