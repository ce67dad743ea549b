import { conversationIdSchema } from '@llmq/contracts';
import type { ConversationTurn } from '@llmq/db';
import { Router, type Request } from 'express';
import type { ApiDeps } from '../deps';
import { HttpError, notFound } from '../errors';

/** Turns per page: each may hold a large request and its reply. */
const MAX_PAGE = 100;
const DEFAULT_PAGE = 20;

/**
 * Server-side conversations. A request naming a `conversationId` (REST, OpenAI facade,
 * WebSocket) creates it on first use and adds a turn; these routes read and forget them.
 * `GET /api/conversations/:id?after=<seq>&limit=<n>` pages through the turns, oldest first.
 */
export function conversationsRouter(deps: ApiDeps): Router {
  const router = Router();

  router.get('/conversations/:id', async (req, res) => {
    const id = conversationId(req);
    const afterSeq = intParam(req.query.after, 'after', 0, 0, 2 ** 31 - 1);
    const limit = intParam(req.query.limit, 'limit', DEFAULT_PAGE, 1, MAX_PAGE);
    const found = await deps.conversations.get(req.principal!.tenantId, id, { afterSeq, limit });
    if (!found) throw notFound('conversation');
    res.json({
      conversationId: found.id,
      createdAt: found.createdAt.toISOString(),
      updatedAt: found.updatedAt.toISOString(),
      turns: found.turns.map(turnView),
      hasMore: found.hasMore,
    });
  });

  router.delete('/conversations/:id', async (req, res) => {
    // The jobs stay (they are the tenant's records and usage); only the history is forgotten.
    if (!(await deps.conversations.delete(req.principal!.tenantId, conversationId(req)))) {
      throw notFound('conversation');
    }
    res.status(204).end();
  });

  return router;
}

function conversationId(req: Request): string {
  const parsed = conversationIdSchema.safeParse(req.params.id);
  // Not a possible id: the same 404 as an unknown one.
  if (!parsed.success) throw notFound('conversation');
  return parsed.data;
}

function intParam(value: unknown, field: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = typeof value === 'string' && /^\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) {
    throw new HttpError(400, 'invalid_request', `${field} must be an integer from ${min} to ${max}`, {
      field,
    });
  }
  return n;
}

function turnView(t: ConversationTurn) {
  return {
    seq: t.seq,
    jobId: t.jobId,
    status: t.status,
    messages: t.messages,
    reply: t.reply,
    createdAt: t.createdAt.toISOString(),
  };
}
