import type { ChatMessage, JobStatus } from '@llmq/contracts';
import type { Pool } from 'pg';

/** One earlier turn as the worker sees it: what was asked and, if it completed, the answer. */
export interface ConversationTurn {
  seq: number;
  jobId: string;
  status: JobStatus;
  messages: ChatMessage[];
  /** The assistant's reply; null unless the turn completed. */
  reply: string | null;
  createdAt: Date;
}

/** What a worker finds when it is about to run a turn. */
export type TurnHistory =
  | { ready: true; seq: number; turns: ConversationTurn[] }
  /** An earlier turn has not finished: this one must wait for it. */
  | { ready: false; seq: number; waitingFor: string }
  /** The job is no turn (its conversation was deleted meanwhile, say). */
  | null;

/**
 * Server-side conversation history. A turn is a job: its messages are the job's spec and its
 * reply the job's result, so the history is read through the jobs table and never copied.
 */
export class ConversationRepository {
  constructor(private readonly pool: Pool) {}

  /**
   * Makes a recorded job the next turn of the tenant's conversation (created on first use) and
   * returns its number. The conversation row's lock orders concurrent appends: numbers follow
   * commit order.
   */
  async appendTurn(tenantId: string, conversationId: string, jobId: string): Promise<number> {
    const { rows } = await this.pool.query<{ seq: number }>(
      `WITH c AS (
         INSERT INTO conversations (tenant_id, id, next_seq) VALUES ($1, $2, 1)
         ON CONFLICT (tenant_id, id) DO UPDATE SET next_seq = conversations.next_seq + 1, updated_at = now()
         RETURNING next_seq
       )
       INSERT INTO conversation_turns (tenant_id, conversation_id, seq, job_id)
       SELECT $1, $2, next_seq, $3 FROM c
       RETURNING seq`,
      [tenantId, conversationId, jobId],
    );
    return (rows[0] as { seq: number }).seq;
  }

  /**
   * Whether a turn may run: its own job's status, and the first earlier turn still unfinished
   * (null: none). A cheap check, made before any history is loaded. Null when the job is no turn.
   */
  async turnState(jobId: string): Promise<{ status: JobStatus; waitingFor: string | null } | null> {
    const { rows } = await this.pool.query<{ status: JobStatus; waiting_for: string | null }>(
      `SELECT j.status,
         (SELECT t.job_id FROM conversation_turns t JOIN jobs pj ON pj.id = t.job_id
          WHERE t.tenant_id = me.tenant_id AND t.conversation_id = me.conversation_id AND t.seq < me.seq
            AND pj.status IN ('queued', 'in_progress')
          ORDER BY t.seq LIMIT 1) AS waiting_for
       FROM conversation_turns me JOIN jobs j ON j.id = me.job_id
       WHERE me.job_id = $1`,
      [jobId],
    );
    const r = rows[0];
    return r ? { status: r.status, waitingFor: r.waiting_for } : null;
  }

  /**
   * The turns before the job's own, oldest first, or which one it must wait for. Turns that
   * failed or were cancelled stay in the list (with no reply); callers leave them out.
   */
  async historyFor(jobId: string): Promise<TurnHistory> {
    const { rows } = await this.pool.query<TurnRow & { own_seq: number }>(
      `WITH me AS (SELECT tenant_id, conversation_id, seq FROM conversation_turns WHERE job_id = $1)
       SELECT me.seq AS own_seq, ${TURN_COLUMNS}
       FROM me
       LEFT JOIN conversation_turns t
         ON t.tenant_id = me.tenant_id AND t.conversation_id = me.conversation_id AND t.seq < me.seq
       LEFT JOIN jobs j ON j.id = t.job_id
       ORDER BY t.seq`,
      [jobId],
    );
    const first = rows[0];
    if (!first) return null;
    // With no earlier turn, the one row is the job's own, with nothing joined.
    const turns = rows.filter((r) => r.seq !== null).map(toTurn);
    const unfinished = turns.find((t) => t.status === 'queued' || t.status === 'in_progress');
    if (unfinished) return { ready: false, seq: first.own_seq, waitingFor: unfinished.jobId };
    return { ready: true, seq: first.own_seq, turns };
  }

  /**
   * A tenant's conversation with a page of its turns (numbered above `afterSeq`, oldest first);
   * null if it does not exist (or is another tenant's).
   */
  async get(
    tenantId: string,
    conversationId: string,
    page: { afterSeq: number; limit: number },
  ): Promise<{
    id: string;
    createdAt: Date;
    updatedAt: Date;
    turns: ConversationTurn[];
    hasMore: boolean;
  } | null> {
    const head = await this.pool.query<{ created_at: Date; updated_at: Date }>(
      `SELECT created_at, updated_at FROM conversations WHERE tenant_id = $1 AND id = $2`,
      [tenantId, conversationId],
    );
    const c = head.rows[0];
    if (!c) return null;
    const { rows } = await this.pool.query<TurnRow>(
      `SELECT ${TURN_COLUMNS} FROM conversation_turns t JOIN jobs j ON j.id = t.job_id
       WHERE t.tenant_id = $1 AND t.conversation_id = $2 AND t.seq > $3 ORDER BY t.seq LIMIT $4`,
      [tenantId, conversationId, page.afterSeq, page.limit + 1],
    );
    return {
      id: conversationId,
      createdAt: c.created_at,
      updatedAt: c.updated_at,
      turns: rows.slice(0, page.limit).map(toTurn),
      hasMore: rows.length > page.limit,
    };
  }

  /** Forgets a conversation's history (its jobs stay). Returns whether it existed. */
  async delete(tenantId: string, conversationId: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(`DELETE FROM conversations WHERE tenant_id = $1 AND id = $2`, [
      tenantId,
      conversationId,
    ]);
    return rowCount === 1;
  }
}

interface TurnRow {
  seq: number;
  job_id: string;
  status: JobStatus;
  messages: ChatMessage[];
  result: string | null;
  created_at: Date;
}

const TURN_COLUMNS = `t.seq, t.job_id, j.status, j.spec -> 'messages' AS messages, j.result, j.created_at`;

function toTurn(r: TurnRow): ConversationTurn {
  return {
    seq: r.seq,
    jobId: r.job_id,
    status: r.status,
    messages: r.messages,
    reply: r.status === 'completed' ? (r.result ?? '') : null,
    createdAt: r.created_at,
  };
}
