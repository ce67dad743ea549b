import { randomBytes } from 'node:crypto';
import type { GenerationSpec, JobError, JobEvent, JobStatus, Usage } from '@llmq/contracts';
import { inTransaction } from './pool';
import type { Pool, PoolClient } from 'pg';

/**
 * OpenAI Files and Batches (sql/008_batches.sql). A batch's lines become ordinary jobs on the
 * batch tier; this module records files, batches and the line → job mapping, and moves a batch
 * through OpenAI's states. Every read is scoped to a tenant: another tenant's file or batch is
 * indistinguishable from a missing one.
 */

/** `batch`: uploaded input; `batch_output`: outputs and errors llmq wrote. */
export type FilePurpose = 'batch' | 'batch_output';

export interface FileRecord {
  id: string;
  tenantId: string;
  purpose: FilePurpose;
  filename: string;
  bytes: number;
  createdAt: Date;
}

export interface NewFile {
  tenantId: string;
  /** The key that uploaded it; null for files llmq writes. */
  apiKeyId: string | null;
  purpose: FilePurpose;
  filename: string;
  content: Buffer;
}

export type CreateFileOutcome =
  | { created: true; file: FileRecord }
  /** The tenant's stored files would pass its storage limit. */
  | { created: false; storedBytes: number };

export interface ListOptions {
  /** At most this many (the caller bounds it). */
  limit: number;
  /** The id of the last item of the previous page. */
  after?: string | undefined;
}

export const BATCH_STATUSES = [
  'validating',
  'failed',
  'in_progress',
  'finalizing',
  'completed',
  'expired',
  'cancelling',
  'cancelled',
] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];
/** Statuses a batch is still working in: they count against the tenant's open-batch limit. */
export const OPEN_BATCH_STATUSES: readonly BatchStatus[] = [
  'validating',
  'in_progress',
  'finalizing',
  'cancelling',
];

/** One reason a batch failed validation, in OpenAI's shape (`line` is 1-based, of the input file). */
export interface BatchError {
  code: string;
  message: string;
  line: number | null;
  param: string | null;
}

export interface BatchRecord {
  id: string;
  tenantId: string;
  apiKeyId: string | null;
  status: BatchStatus;
  endpoint: string;
  completionWindow: string;
  inputFileId: string;
  outputFileId: string | null;
  errorFileId: string | null;
  errors: BatchError[] | null;
  metadata: Record<string, string> | null;
  createdAt: Date;
  inProgressAt: Date | null;
  expiresAt: Date;
  finalizingAt: Date | null;
  completedAt: Date | null;
  failedAt: Date | null;
  expiredAt: Date | null;
  cancellingAt: Date | null;
  cancelledAt: Date | null;
}

export interface NewBatch {
  id: string;
  tenantId: string;
  apiKeyId: string | null;
  endpoint: string;
  completionWindow: string;
  inputFileId: string;
  metadata: Record<string, string> | null;
  /** The completion window: the batch expires this long after its creation. */
  windowSeconds: number;
}

/** OpenAI's request counts, from the statuses of the batch's jobs (cancelled ones count as failed). */
export interface RequestCounts {
  total: number;
  completed: number;
  failed: number;
}

/** One validated line of an input file, about to become a job. */
export interface BatchLine {
  line: number;
  customId: string;
  jobId: string;
  spec: GenerationSpec;
  requestHash: string;
  metadata: Record<string, string> | null;
}

/** A line of a batch with its job, as finalization reads it. */
export interface BatchResult {
  line: number;
  customId: string;
  jobId: string;
  status: JobStatus;
  model: string;
  servedModel: string | null;
  result: string | null;
  finishReason: string | null;
  usage: Usage | null;
  error: JobError | null;
  createdAt: Date;
}

/** What a finalized batch stores: the JSONL of its outputs and of its errors, each when not empty. */
export interface BatchOutputs {
  output: Buffer | null;
  errors: Buffer | null;
}

/**
 * What finalization does with a batch: writes its outputs, or fails it with a reason (its
 * outputs cannot be written, e.g. they would be too large).
 */
export type BuiltOutputs = BatchOutputs | { fail: BatchError };

export interface FinalizeOptions {
  /** Failed finalizations of a batch before it ends `failed`. @defaultValue 5 */
  maxAttempts?: number;
  /** Wait before the second attempt, doubled for each one after. @defaultValue 30000 */
  retryMs?: number;
}

export type FinalizeOutcome =
  /** Ended: `completed`, `cancelled`, `expired`, or `failed` when its outputs could not be written. */
  | { ok: true; batch: BatchRecord }
  /** This attempt failed: tried again later, or, after the last attempt, the batch `failed`. */
  | { ok: false; batchId: string; error: unknown; attempts: number; failed: boolean };

/** Jobs cancelled by one step of a batch cancel or expiry. */
export interface CancelledBatchJobs {
  batchId: string;
  /** The batch expired (rather than being cancelled by its owner). */
  expired: boolean;
  cancelledJobIds: string[];
}

/** A queued job of a batch, as the producer needs it. */
export interface QueuedBatchJob {
  jobId: string;
  tenantId: string;
  spec: GenerationSpec;
}

const HEX_ID = '[0-9a-f]{32}';
const FILE_ID = new RegExp(`^file-${HEX_ID}$`);
const BATCH_ID = new RegExp(`^batch_${HEX_ID}$`);
/** A new file id: OpenAI's `file-` prefix and 128 random bits. */
export const newFileId = () => `file-${randomBytes(16).toString('hex')}`;
/** A new batch id: OpenAI's `batch_` prefix and 128 random bits. */
export const newBatchId = () => `batch_${randomBytes(16).toString('hex')}`;
/** Anything else cannot be an id: it gets the same 404 as an unknown one. */
export const isFileId = (id: string) => FILE_ID.test(id);
export const isBatchId = (id: string) => BATCH_ID.test(id);

/** Keys of `pg_advisory_xact_lock(class, hashtext(tenant))`: one tenant's uploads / creations in turn. */
const LOCK_CLASS = { files: 8001, batches: 8002 } as const;

/** Lines inserted per statement when a batch is expanded into jobs. */
const EXPAND_CHUNK = 1000;

interface FileRow {
  id: string;
  tenant_id: string;
  purpose: FilePurpose;
  filename: string;
  bytes: number;
  created_at: Date;
}

const FILE_COLUMNS = 'id, tenant_id, purpose, filename, bytes, created_at';

function toFile(r: FileRow): FileRecord {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    purpose: r.purpose,
    filename: r.filename,
    bytes: r.bytes,
    createdAt: r.created_at,
  };
}

/** Uploaded and generated files, their bytes in Postgres. */
export class FileRepository {
  constructor(private readonly pool: Pool) {}

  /**
   * Stores a file, unless the tenant's files would then hold more than `maxTenantBytes` (0: no
   * limit). One tenant's uploads take turns (an advisory lock), so two at once cannot both pass.
   */
  create(file: NewFile, maxTenantBytes: number): Promise<CreateFileOutcome> {
    return inTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_CLASS.files, file.tenantId]);
      if (maxTenantBytes > 0) {
        const { rows } = await client.query<{ stored: string }>(
          'SELECT coalesce(sum(bytes), 0) AS stored FROM files WHERE tenant_id = $1',
          [file.tenantId],
        );
        const stored = Number(rows[0]?.stored ?? 0);
        if (stored + file.content.length > maxTenantBytes) return { created: false, storedBytes: stored };
      }
      const file_ = await insertFile(client, file);
      return { created: true, file: file_ };
    });
  }

  async get(tenantId: string, id: string): Promise<FileRecord | null> {
    const { rows } = await this.pool.query<FileRow>(
      `SELECT ${FILE_COLUMNS} FROM files WHERE id = $1 AND tenant_id = $2`,
      [id, tenantId],
    );
    return rows[0] ? toFile(rows[0]) : null;
  }

  /** The bytes of a tenant's file; null when it has no such file. */
  async content(tenantId: string, id: string): Promise<Buffer | null> {
    const { rows } = await this.pool.query<{ content: Buffer }>(
      'SELECT content FROM files WHERE id = $1 AND tenant_id = $2',
      [id, tenantId],
    );
    return rows[0]?.content ?? null;
  }

  /** A page of the tenant's files, newest first (or oldest first with `order: 'asc'`). */
  async list(
    tenantId: string,
    options: ListOptions & { purpose?: string | undefined; order: 'asc' | 'desc' },
  ): Promise<{ files: FileRecord[]; hasMore: boolean }> {
    const [cmp, dir] = options.order === 'asc' ? ['>', 'ASC'] : ['<', 'DESC'];
    const { rows } = await this.pool.query<FileRow>(
      `SELECT ${FILE_COLUMNS} FROM files
       WHERE tenant_id = $1 AND ($2::text IS NULL OR purpose = $2)
         AND ($3::text IS NULL
              OR (created_at, id) ${cmp} (SELECT created_at, id FROM files WHERE tenant_id = $1 AND id = $3))
       ORDER BY created_at ${dir}, id ${dir} LIMIT $4`,
      [tenantId, options.purpose ?? null, options.after ?? null, options.limit + 1],
    );
    return { files: rows.slice(0, options.limit).map(toFile), hasMore: rows.length > options.limit };
  }

  /** Returns whether the tenant had the file. */
  async delete(tenantId: string, id: string): Promise<boolean> {
    const { rowCount } = await this.pool.query('DELETE FROM files WHERE id = $1 AND tenant_id = $2', [
      id,
      tenantId,
    ]);
    return rowCount === 1;
  }
}

async function insertFile(client: PoolClient, file: NewFile): Promise<FileRecord> {
  const { rows } = await client.query<FileRow>(
    `INSERT INTO files (id, tenant_id, api_key_id, purpose, filename, bytes, content)
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${FILE_COLUMNS}`,
    [
      newFileId(),
      file.tenantId,
      file.apiKeyId,
      file.purpose,
      file.filename,
      file.content.length,
      file.content,
    ],
  );
  return toFile(rows[0]!);
}

interface BatchRow {
  id: string;
  tenant_id: string;
  api_key_id: string | null;
  status: BatchStatus;
  endpoint: string;
  completion_window: string;
  input_file_id: string;
  output_file_id: string | null;
  error_file_id: string | null;
  errors: BatchError[] | null;
  metadata: Record<string, string> | null;
  created_at: Date;
  in_progress_at: Date | null;
  expires_at: Date;
  finalizing_at: Date | null;
  completed_at: Date | null;
  failed_at: Date | null;
  expired_at: Date | null;
  cancelling_at: Date | null;
  cancelled_at: Date | null;
}

const BATCH_COLUMNS = `id, tenant_id, api_key_id, status, endpoint, completion_window, input_file_id,
  output_file_id, error_file_id, errors, metadata, created_at, in_progress_at, expires_at, finalizing_at,
  completed_at, failed_at, expired_at, cancelling_at, cancelled_at`;
const OPEN = `status IN (${OPEN_BATCH_STATUSES.map((s) => `'${s}'`).join(', ')})`;
/** Some job of batch `b` has not finished yet. */
const UNFINISHED_REQUEST = `EXISTS (SELECT 1 FROM batch_requests r JOIN jobs j ON j.id = r.job_id
  WHERE r.batch_id = b.id AND j.status IN ('queued', 'in_progress'))`;

function toBatch(r: BatchRow): BatchRecord {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    apiKeyId: r.api_key_id,
    status: r.status,
    endpoint: r.endpoint,
    completionWindow: r.completion_window,
    inputFileId: r.input_file_id,
    outputFileId: r.output_file_id,
    errorFileId: r.error_file_id,
    errors: r.errors,
    metadata: r.metadata,
    createdAt: r.created_at,
    inProgressAt: r.in_progress_at,
    expiresAt: r.expires_at,
    finalizingAt: r.finalizing_at,
    completedAt: r.completed_at,
    failedAt: r.failed_at,
    expiredAt: r.expired_at,
    cancellingAt: r.cancelling_at,
    cancelledAt: r.cancelled_at,
  };
}

export type CreateBatchOutcome =
  | { created: true; batch: BatchRecord }
  /** The tenant has `open` batches already, its limit. */
  | { created: false; open: number };

export type CancelBatchOutcome =
  /** Now cancelling (or cancelling already): its queued jobs are cancelled, running ones finish. */
  | { cancelled: true; batch: BatchRecord; cancelledJobIds: string[] }
  /** Past cancelling: the batch has finished (or is writing its outputs). */
  | { cancelled: false; status: BatchStatus };

/**
 * Batches and their requests. The states are OpenAI's: validating → in_progress → finalizing →
 * completed, or failed (the input file), cancelling → cancelled, and expired (the completion
 * window passed). Each move is one conditional statement or one transaction on the batch row,
 * so API processes and any number of workers can drive batches at once.
 */
export class BatchRepository {
  constructor(private readonly pool: Pool) {}

  /**
   * Records a new batch (status `validating`) unless the tenant has `maxOpen` open batches. One
   * tenant's creations take turns (an advisory lock), so two at once cannot both pass the limit.
   */
  create(batch: NewBatch, maxOpen: number): Promise<CreateBatchOutcome> {
    return inTransaction(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
        LOCK_CLASS.batches,
        batch.tenantId,
      ]);
      const { rows: counted } = await client.query<{ open: number }>(
        `SELECT count(*)::int AS open FROM batches WHERE tenant_id = $1 AND ${OPEN}`,
        [batch.tenantId],
      );
      const open = counted[0]?.open ?? 0;
      if (open >= maxOpen) return { created: false, open };
      const { rows } = await client.query<BatchRow>(
        `INSERT INTO batches (id, tenant_id, api_key_id, status, endpoint, completion_window, input_file_id,
           metadata, expires_at)
         VALUES ($1, $2, $3, 'validating', $4, $5, $6, $7, now() + make_interval(secs => $8))
         RETURNING ${BATCH_COLUMNS}`,
        [
          batch.id,
          batch.tenantId,
          batch.apiKeyId,
          batch.endpoint,
          batch.completionWindow,
          batch.inputFileId,
          batch.metadata === null ? null : JSON.stringify(batch.metadata),
          batch.windowSeconds,
        ],
      );
      return { created: true, batch: toBatch(rows[0]!) };
    });
  }

  async get(tenantId: string, id: string): Promise<BatchRecord | null> {
    const { rows } = await this.pool.query<BatchRow>(
      `SELECT ${BATCH_COLUMNS} FROM batches WHERE id = $1 AND tenant_id = $2`,
      [id, tenantId],
    );
    return rows[0] ? toBatch(rows[0]) : null;
  }

  /** A batch by id alone: for workers, which act for whichever tenant owns it. */
  async getById(id: string): Promise<BatchRecord | null> {
    const { rows } = await this.pool.query<BatchRow>(`SELECT ${BATCH_COLUMNS} FROM batches WHERE id = $1`, [
      id,
    ]);
    return rows[0] ? toBatch(rows[0]) : null;
  }

  /** A page of the tenant's batches, newest first. */
  async list(tenantId: string, options: ListOptions): Promise<{ batches: BatchRecord[]; hasMore: boolean }> {
    const { rows } = await this.pool.query<BatchRow>(
      `SELECT ${BATCH_COLUMNS} FROM batches
       WHERE tenant_id = $1
         AND ($2::text IS NULL
              OR (created_at, id) < (SELECT created_at, id FROM batches WHERE tenant_id = $1 AND id = $2))
       ORDER BY created_at DESC, id DESC LIMIT $3`,
      [tenantId, options.after ?? null, options.limit + 1],
    );
    return { batches: rows.slice(0, options.limit).map(toBatch), hasMore: rows.length > options.limit };
  }

  /** Request counts of batches, by id (a batch with no requests yet is absent: all zero). */
  async requestCounts(batchIds: string[]): Promise<Map<string, RequestCounts>> {
    const { rows } = await this.pool.query<{ batch_id: string } & RequestCounts>(
      `SELECT r.batch_id, count(*)::int AS total,
              count(*) FILTER (WHERE j.status = 'completed')::int AS completed,
              count(*) FILTER (WHERE j.status IN ('failed', 'cancelled'))::int AS failed
       FROM batch_requests r JOIN jobs j ON j.id = r.job_id
       WHERE r.batch_id = ANY($1::text[]) GROUP BY r.batch_id`,
      [batchIds],
    );
    return new Map(
      rows.map((r) => [r.batch_id, { total: r.total, completed: r.completed, failed: r.failed }]),
    );
  }

  /**
   * Starts cancelling a tenant's batch: its queued jobs are cancelled (charged nothing, their
   * ledger entries written with the cancel), its running ones finish and their answers go into
   * the output. Null when the tenant has no such batch.
   */
  cancel(tenantId: string, id: string): Promise<CancelBatchOutcome | null> {
    return inTransaction(this.pool, async (client) => {
      // The row lock waits for an expansion in progress: its jobs are then cancelled too.
      const { rows } = await client.query<BatchRow>(
        `SELECT ${BATCH_COLUMNS} FROM batches WHERE id = $1 AND tenant_id = $2 FOR UPDATE`,
        [id, tenantId],
      );
      const found = rows[0];
      if (!found) return null;
      switch (found.status) {
        case 'cancelling':
        case 'cancelled':
          return { cancelled: true, batch: toBatch(found), cancelledJobIds: [] };
        case 'validating':
        case 'in_progress': {
          const { rows: updated } = await client.query<BatchRow>(
            `UPDATE batches SET status = 'cancelling', cancelling_at = now() WHERE id = $1
             RETURNING ${BATCH_COLUMNS}`,
            [id],
          );
          const cancelledJobIds = await cancelQueuedJobs(client, id);
          return { cancelled: true, batch: toBatch(updated[0]!), cancelledJobIds };
        }
        case 'finalizing':
        case 'completed':
        case 'failed':
        case 'expired':
          return { cancelled: false, status: found.status };
      }
    });
  }

  /** A batch whose input file is invalid fails; returns whether it was still validating. */
  async fail(id: string, errors: BatchError[]): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE batches SET status = 'failed', failed_at = now(), errors = $2 WHERE id = $1 AND status = 'validating'`,
      [id, JSON.stringify(errors)],
    );
    return rowCount === 1;
  }

  /**
   * Records every line of a validated batch as a queued job of the batch tier (under the key that
   * created the batch) and moves the batch to `in_progress`, in one transaction: a batch has all
   * its jobs or none. Only a batch still validating is expanded; otherwise its status is returned
   * (cancelled meanwhile, or expanded by an earlier run of the same control job).
   */
  expand(
    id: string,
    lines: BatchLine[],
  ): Promise<{ expanded: true } | { expanded: false; status: BatchStatus | null }> {
    return inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{
        tenant_id: string;
        api_key_id: string | null;
        status: BatchStatus;
      }>('SELECT tenant_id, api_key_id, status FROM batches WHERE id = $1 FOR UPDATE', [id]);
      const batch = rows[0];
      if (!batch || batch.status !== 'validating') return { expanded: false, status: batch?.status ?? null };
      for (let i = 0; i < lines.length; i += EXPAND_CHUNK) {
        const chunk = lines.slice(i, i + EXPAND_CHUNK);
        await client.query(
          `INSERT INTO jobs (id, tenant_id, api_key_id, status, model, spec, request_hash, metadata, priority)
           SELECT u.id, $1, $2, 'queued', u.model, u.spec, u.hash, u.metadata, 'batch'
           FROM unnest($3::uuid[], $4::text[], $5::jsonb[], $6::text[], $7::jsonb[]) AS u(id, model, spec, hash, metadata)`,
          [
            batch.tenant_id,
            batch.api_key_id,
            chunk.map((l) => l.jobId),
            chunk.map((l) => l.spec.model),
            chunk.map((l) => JSON.stringify(l.spec)),
            chunk.map((l) => l.requestHash),
            chunk.map((l) => (l.metadata === null ? null : JSON.stringify(l.metadata))),
          ],
        );
        await client.query(
          `INSERT INTO batch_requests (batch_id, line, custom_id, job_id)
           SELECT $1, u.line, u.custom_id, u.job_id FROM unnest($2::int[], $3::text[], $4::uuid[]) AS u(line, custom_id, job_id)`,
          [id, chunk.map((l) => l.line), chunk.map((l) => l.customId), chunk.map((l) => l.jobId)],
        );
      }
      await client.query(`UPDATE batches SET status = 'in_progress', in_progress_at = now() WHERE id = $1`, [
        id,
      ]);
      return { expanded: true };
    });
  }

  /** The batch's jobs still queued, in line order: what its control job (re-)enqueues. */
  async queuedJobs(id: string): Promise<QueuedBatchJob[]> {
    const { rows } = await this.pool.query<{ id: string; tenant_id: string; spec: GenerationSpec }>(
      `SELECT j.id, j.tenant_id, j.spec FROM batch_requests r JOIN jobs j ON j.id = r.job_id
       WHERE r.batch_id = $1 AND j.status = 'queued' ORDER BY r.line`,
      [id],
    );
    return rows.map((r) => ({ jobId: r.id, tenantId: r.tenant_id, spec: r.spec }));
  }

  /** Batches still validating since before `olderThan`: their control job may have been lost. */
  async staleValidating(olderThan: Date, limit: number): Promise<{ id: string; tenantId: string }[]> {
    const { rows } = await this.pool.query<{ id: string; tenant_id: string }>(
      `SELECT id, tenant_id FROM batches WHERE status = 'validating' AND created_at < $1 ORDER BY created_at LIMIT $2`,
      [olderThan, limit],
    );
    return rows.map((r) => ({ id: r.id, tenantId: r.tenant_id }));
  }

  /**
   * Batches whose completion window has passed with requests unfinished: their queued jobs are
   * cancelled (as a cancel does) and they are marked expired; they end as `expired` once their
   * running jobs finish. A batch whose jobs have all finished is left to complete, however late
   * its sweep comes. Returns the batches expired by this call with the jobs it cancelled.
   */
  async expireDue(limit: number): Promise<CancelledBatchJobs[]> {
    const expired: CancelledBatchJobs[] = [];
    for (let i = 0; i < limit; i++) {
      const one = await inTransaction(this.pool, async (client) => {
        const { rows } = await client.query<{ id: string }>(
          `SELECT id FROM batches b
           WHERE status = 'in_progress' AND expired_at IS NULL AND expires_at <= now() AND ${UNFINISHED_REQUEST}
           ORDER BY expires_at LIMIT 1 FOR UPDATE SKIP LOCKED`,
        );
        const id = rows[0]?.id;
        if (!id) return null;
        await client.query('UPDATE batches SET expired_at = now() WHERE id = $1', [id]);
        return { batchId: id, expired: true, cancelledJobIds: await cancelQueuedJobs(client, id) };
      });
      if (!one) break;
      expired.push(one);
    }
    return expired;
  }

  /**
   * Cancels the queued jobs of batches that are cancelling or expired: a job running at the
   * cancel that went back to the queue afterwards (delayed for provider capacity) would otherwise
   * run later and keep its batch open. Safe to repeat. Returns, per batch, the jobs this call
   * cancelled.
   */
  async cancelRequeued(): Promise<CancelledBatchJobs[]> {
    const { rows } = await this.pool.query<{ id: string; status: BatchStatus }>(
      `SELECT id, status FROM batches WHERE status = 'cancelling' OR (status = 'in_progress' AND expired_at IS NOT NULL)`,
    );
    const cancelled: CancelledBatchJobs[] = [];
    for (const b of rows) {
      const ids = await inTransaction(this.pool, (client) => cancelQueuedJobs(client, b.id));
      if (ids.length > 0)
        cancelled.push({ batchId: b.id, expired: b.status !== 'cancelling', cancelledJobIds: ids });
    }
    return cancelled;
  }

  /** Stores the event streams of jobs (`jobs.events`), in one statement. */
  async storeJobEvents(streams: Map<string, JobEvent[]>): Promise<void> {
    if (streams.size === 0) return;
    await this.pool.query(
      `UPDATE jobs j SET events = u.events FROM unnest($1::uuid[], $2::json[]) AS u(id, events) WHERE j.id = u.id`,
      [[...streams.keys()], [...streams.values()].map((events) => JSON.stringify(events))],
    );
  }

  /** Moves every in-progress batch whose jobs have all finished to `finalizing`; returns their ids. */
  async startFinalizing(): Promise<string[]> {
    const { rows } = await this.pool.query<{ id: string }>(
      `UPDATE batches b SET status = 'finalizing', finalizing_at = now()
       WHERE b.status = 'in_progress' AND NOT ${UNFINISHED_REQUEST}
       RETURNING b.id`,
    );
    return rows.map((r) => r.id);
  }

  /**
   * Finalizes one batch that is ready (finalizing, or cancelling with every job finished) and not
   * waiting to retry: takes it with `FOR UPDATE SKIP LOCKED`, so concurrent workers each take a
   * different one, reads its lines with their jobs in line order, has `build` write the output
   * and error files, stores them and ends the batch (`completed`, `cancelled` or `expired`, or
   * `failed` when `build` says so), all in one transaction: a worker that dies midway leaves the
   * batch as it was for the next sweep. `build` gets the batch with its final status. A batch
   * whose finalization throws is tried again later, each wait twice the one before, and fails
   * after `maxAttempts`, so it cannot hold its sweep (and its tenant's open-batch slot) for ever.
   * Returns null when no batch was ready.
   */
  async finalizeNext(
    build: (batch: BatchRecord, results: BatchResult[]) => BuiltOutputs,
    options: FinalizeOptions = {},
  ): Promise<FinalizeOutcome | null> {
    const claimed = { id: null as string | null };
    try {
      const batch = await inTransaction(this.pool, async (client) => {
        const { rows } = await client.query<BatchRow>(
          `SELECT ${BATCH_COLUMNS} FROM batches b
           WHERE (b.status = 'finalizing' OR (b.status = 'cancelling' AND NOT ${UNFINISHED_REQUEST}))
             AND (b.next_finalize_at IS NULL OR b.next_finalize_at <= now())
           ORDER BY b.next_finalize_at NULLS FIRST, b.created_at LIMIT 1 FOR UPDATE OF b SKIP LOCKED`,
        );
        if (!rows[0]) return null;
        const batch = toBatch(rows[0]);
        claimed.id = batch.id;
        return writeOutputs(client, batch, build);
      });
      return batch ? { ok: true, batch } : null;
    } catch (error) {
      if (claimed.id === null) throw error;
      return {
        ok: false,
        batchId: claimed.id,
        error,
        ...(await this.finalizeFailed(claimed.id, error, options)),
      };
    }
  }

  /** Counts a failed finalization; the last allowed one fails the batch. */
  private async finalizeFailed(
    id: string,
    error: unknown,
    options: FinalizeOptions,
  ): Promise<{ attempts: number; failed: boolean }> {
    const { rows } = await this.pool.query<{ finalize_attempts: number }>(
      `UPDATE batches SET finalize_attempts = finalize_attempts + 1,
         next_finalize_at = now() + make_interval(secs => $2::float8 / 1000 * power(2, finalize_attempts))
       WHERE id = $1 AND status IN ('finalizing', 'cancelling') RETURNING finalize_attempts`,
      [id, options.retryMs ?? 30_000],
    );
    const attempts = rows[0]?.finalize_attempts ?? 0;
    if (attempts < (options.maxAttempts ?? 5)) return { attempts, failed: false };
    const reason = (error instanceof Error ? error.message : String(error)).slice(0, 200);
    const why: BatchError = {
      code: 'finalization_failed',
      message: `The output files of the batch could not be written (${attempts} attempts; last error: ${reason}). The results of its requests remain at /api/jobs/{request_id}.`,
      line: null,
      param: null,
    };
    const { rowCount } = await this.pool.query(
      `UPDATE batches SET status = 'failed', failed_at = now(), errors = $2
       WHERE id = $1 AND status IN ('finalizing', 'cancelling')`,
      [id, JSON.stringify([why])],
    );
    return { attempts, failed: rowCount === 1 };
  }
}

/** The finalization of a claimed batch (see `finalizeNext`), in its transaction. */
async function writeOutputs(
  client: PoolClient,
  batch: BatchRecord,
  build: (batch: BatchRecord, results: BatchResult[]) => BuiltOutputs,
): Promise<BatchRecord> {
  const status: BatchStatus =
    batch.status === 'cancelling' ? 'cancelled' : batch.expiredAt !== null ? 'expired' : 'completed';
  const results = await readResults(client, batch.id);
  const outputs = build({ ...batch, status }, results);
  if ('fail' in outputs) {
    const { rows } = await client.query<BatchRow>(
      `UPDATE batches SET status = 'failed', failed_at = now(), errors = $2 WHERE id = $1 RETURNING ${BATCH_COLUMNS}`,
      [batch.id, JSON.stringify([outputs.fail])],
    );
    return toBatch(rows[0]!);
  }
  const store = async (content: Buffer | null, suffix: string) =>
    content === null
      ? null
      : (
          await insertFile(client, {
            tenantId: batch.tenantId,
            apiKeyId: null,
            purpose: 'batch_output',
            filename: `${batch.id}_${suffix}.jsonl`,
            content,
          })
        ).id;
  const outputFileId = await store(outputs.output, 'output');
  const errorFileId = await store(outputs.errors, 'error');
  const stamp = { completed: 'completed_at', cancelled: 'cancelled_at', expired: 'expired_at' }[
    status as 'completed' | 'cancelled' | 'expired'
  ];
  const { rows: done } = await client.query<BatchRow>(
    `UPDATE batches SET status = $2, output_file_id = $3, error_file_id = $4, ${stamp} = coalesce(${stamp}, now())
     WHERE id = $1 RETURNING ${BATCH_COLUMNS}`,
    [batch.id, status, outputFileId, errorFileId],
  );
  return toBatch(done[0]!);
}

/**
 * Cancels the batch's queued jobs and writes their ledger entries (nothing charged, outcome
 * `cancelled`), as `cancelJob` does for one job. A job a worker has just started is left to
 * finish: the status check is re-evaluated under the row lock. The jobs stay in BullMQ; a worker
 * that takes one finds it cancelled and skips it (callers may also remove them).
 */
async function cancelQueuedJobs(client: PoolClient, batchId: string): Promise<string[]> {
  const { rows } = await client.query<{ id: string }>(
    `WITH cancelled AS (
       UPDATE jobs j SET status = 'cancelled', completed_at = now(), updated_at = now()
       FROM batch_requests r
       WHERE r.batch_id = $1 AND j.id = r.job_id AND j.status = 'queued'
       RETURNING j.id, j.api_key_id, j.tenant_id, j.model
     ), charged AS (
       INSERT INTO usage_ledger (kind, job_id, api_key_id, tenant_id, model, cache_status, outcome)
       SELECT 'job', id, api_key_id, tenant_id, model, 'miss', 'cancelled' FROM cancelled
       ON CONFLICT (job_id) WHERE kind = 'job' DO NOTHING
     )
     SELECT id FROM cancelled`,
    [batchId],
  );
  return rows.map((r) => r.id);
}

async function readResults(client: PoolClient, batchId: string): Promise<BatchResult[]> {
  const { rows } = await client.query<{
    line: number;
    custom_id: string;
    id: string;
    status: JobStatus;
    model: string;
    served_model: string | null;
    result: string | null;
    finish_reason: string | null;
    usage: Usage | null;
    error: JobError | null;
    created_at: Date;
  }>(
    `SELECT r.line, r.custom_id, j.id, j.status, j.model, j.served_model, j.result, j.finish_reason, j.usage,
            j.error, j.created_at
     FROM batch_requests r JOIN jobs j ON j.id = r.job_id
     WHERE r.batch_id = $1 ORDER BY r.line`,
    [batchId],
  );
  return rows.map((r) => ({
    line: r.line,
    customId: r.custom_id,
    jobId: r.id,
    status: r.status,
    model: r.model,
    servedModel: r.served_model,
    result: r.result,
    finishReason: r.finish_reason,
    usage: r.usage,
    error: r.error,
    createdAt: r.created_at,
  }));
}
