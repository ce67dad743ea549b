/**
 * The envelopes of the WebSocket gateway (`/ws`, docs/websocket.md): what a client may send,
 * what the server answers, and how a raw frame becomes a checked message. Transport-free, so
 * it can be read (and tested) without a socket.
 */
import {
  generateRequestSchema,
  type GenerateRequest,
  type JobEvent,
  type JobStatus,
  type Usage,
} from '@llmq/contracts';
import { z } from 'zod';
import { HttpError, fromZod } from './errors';

/** The client's reference for a message, echoed in every reply about it so clients can multiplex. */
export const refSchema = z.union([z.string().max(128), z.number().int().safe()]);
export type Ref = z.infer<typeof refSchema>;

/** What a client may send. */
export type ClientMessage =
  | { type: 'PROMPT'; id?: Ref; body: GenerateRequest; idempotencyKey?: string }
  | { type: 'CANCEL'; id?: Ref; taskId: string }
  /** Follow a task again (from another connection, after a reconnect): its events after `afterSeq`. */
  | { type: 'SUBSCRIBE'; id?: Ref; taskId: string; afterSeq?: number }
  | { type: 'PING'; id?: Ref };
export type ClientType = ClientMessage['type'];
export const CLIENT_TYPES: readonly ClientType[] = ['PROMPT', 'CANCEL', 'SUBSCRIBE', 'PING'];

/** What the server sends. Every reply about a client message carries its `id`. */
export type ServerMessage =
  /** A PROMPT became a task (its job), or a SUBSCRIBE found it. */
  | {
      type: 'ACK';
      id?: Ref;
      taskId: string;
      status: JobStatus;
      /** Jobs waiting in the queues when it was accepted; null when that could not be read. */
      queueDepth: number | null;
      pollUrl: string;
      streamUrl: string;
    }
  /**
   * A task's status changed; `restarted`: the text so far is void, it starts over. Every message
   * of a task's events carries the event's `seq`: SUBSCRIBE with the last one seen resumes after it.
   */
  | {
      type: 'STATUS';
      id?: Ref;
      taskId: string;
      seq: number;
      status: JobStatus;
      attempt?: number;
      restarted?: boolean;
      retryInMs?: number;
    }
  /** Output text; `seq` is the last job event it includes (tokens of a slow client are joined). */
  | { type: 'TOKEN'; id?: Ref; taskId: string; text: string; seq: number }
  | {
      type: 'COMPLETE';
      id?: Ref;
      taskId: string;
      seq: number;
      result: string;
      finishReason: string | null;
      usage: Usage | null;
      /** Present when the answer came from the cache: which layer. */
      source?: 'redis' | 'postgres' | 'semantic';
    }
  /**
   * A message refused (no `taskId`), or a task that ended without a result (`taskId`: failed,
   * or `cancelled`). The codes are the REST API's.
   */
  | {
      type: 'ERROR';
      id?: Ref;
      taskId?: string;
      /** For a task's end: the seq of its terminal event. */
      seq?: number;
      code: string;
      message: string;
      /** The HTTP status the REST API answers with for this refusal. */
      status?: number;
      field?: string;
      retryAfterMs?: number;
      retryable?: boolean;
    }
  /** A PROMPT refused by a limit: the connection's task bound or the key's limits (429). */
  | { type: 'RATE_LIMITED'; id?: Ref; code: string; message: string; retryAfterMs: number | null }
  /** The answer to a CANCEL: the task's own stream ends with ERROR `cancelled`. */
  | { type: 'CANCELLED'; id?: Ref; taskId: string; status: JobStatus }
  | { type: 'PONG'; id?: Ref };
export type ServerType = ServerMessage['type'];

/** A frame that is not a message the server takes: the ERROR to answer with. */
export interface Refusal {
  id?: Ref;
  code: string;
  message: string;
  field?: string;
}

const envelopeSchema = z.looseObject({ type: z.string(), id: refSchema.optional() });
const cancelSchema = z.strictObject({
  type: z.literal('CANCEL'),
  id: refSchema.optional(),
  taskId: z.string(),
});
const subscribeSchema = z.strictObject({
  type: z.literal('SUBSCRIBE'),
  id: refSchema.optional(),
  taskId: z.string(),
  afterSeq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});
const pingSchema = z.strictObject({ type: z.literal('PING'), id: refSchema.optional() });

/** Parses one text frame; a refusal names what is wrong (and the message's id when it has one). */
export function parseClientMessage(text: string): { message: ClientMessage } | { refusal: Refusal } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return { refusal: { code: 'malformed_json', message: `not valid JSON: ${(error as Error).message}` } };
  }
  const envelope = envelopeSchema.safeParse(raw);
  const id = readRef(raw);
  if (!envelope.success) {
    return {
      refusal: {
        ...withRef(id),
        code: 'invalid_message',
        message: 'a message is a JSON object with a string "type"',
        field: 'type',
      },
    };
  }
  const fields = envelope.data;
  switch (fields.type) {
    case 'PROMPT':
      return parsePrompt(fields, id);
    case 'CANCEL':
      return checked(cancelSchema.safeParse(fields), id);
    case 'SUBSCRIBE':
      return checked(subscribeSchema.safeParse(fields), id);
    case 'PING':
      return checked(pingSchema.safeParse(fields), id);
    default:
      return {
        refusal: {
          ...withRef(id),
          code: 'unknown_type',
          message: `unknown message type "${fields.type.slice(0, 64)}"; expected one of ${CLIENT_TYPES.join(', ')}`,
          field: 'type',
        },
      };
  }
}

/**
 * A PROMPT is the REST body of `POST /api/generate` (same fields, same limits) with `content`
 * for `prompt`, plus the envelope's `type`, `id` and `idempotencyKey`.
 */
function parsePrompt(
  fields: Record<string, unknown>,
  id: Ref | undefined,
): { message: ClientMessage } | { refusal: Refusal } {
  const { type: _type, id: _id, content, idempotencyKey, ...rest } = fields;
  const invalid = (field: string, message: string) => ({
    refusal: { ...withRef(id), code: 'invalid_request', message: `${field}: ${message}`, field },
  });
  if (idempotencyKey !== undefined && typeof idempotencyKey !== 'string') {
    return invalid('idempotencyKey', 'expected a string');
  }
  if (content !== undefined && rest.prompt !== undefined) {
    return invalid('content', 'send content or prompt, not both');
  }
  if (content === undefined && rest.prompt === undefined && rest.messages === undefined) {
    return invalid('content', 'either content or messages is required');
  }
  const body = content === undefined ? rest : { ...rest, prompt: content };
  const parsed = generateRequestSchema.safeParse(body);
  if (!parsed.success) {
    const problem = fromZod(parsed.error);
    const field = content !== undefined && problem.extra.field === 'prompt' ? 'content' : problem.extra.field;
    const message = field === 'content' ? problem.message.replace(/^prompt/, 'content') : problem.message;
    return {
      refusal: { ...withRef(id), code: problem.code, message, ...(field ? { field } : {}) },
    };
  }
  return {
    message: {
      type: 'PROMPT',
      ...withRef(id),
      body: parsed.data,
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
    },
  };
}

function checked(
  result: z.ZodSafeParseResult<ClientMessage>,
  id: Ref | undefined,
): { message: ClientMessage } | { refusal: Refusal } {
  if (result.success) return { message: result.data };
  const problem = fromZod(result.error);
  return {
    refusal: {
      ...withRef(id),
      code: problem.code,
      message: problem.message,
      ...(problem.extra.field ? { field: problem.extra.field } : {}),
    },
  };
}

/** The message's `id`, when it has a usable one, so even a refusal can be matched by the client. */
function readRef(raw: unknown): Ref | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const parsed = refSchema.safeParse((raw as { id?: unknown }).id);
  return parsed.success ? parsed.data : undefined;
}

export const withRef = (id: Ref | undefined): { id?: Ref } => (id === undefined ? {} : { id });

/** A task's job event as the envelope the client gets (TOKEN, STATUS, COMPLETE or ERROR). */
export function eventMessage(taskId: string, id: Ref | undefined, event: JobEvent): ServerMessage {
  const ref = withRef(id);
  switch (event.type) {
    case 'status':
      return {
        type: 'STATUS',
        ...ref,
        taskId,
        seq: event.seq,
        status: event.status,
        ...(event.attempt !== undefined ? { attempt: event.attempt } : {}),
        ...(event.restarted ? { restarted: true } : {}),
        ...(event.retryInMs !== undefined ? { retryInMs: event.retryInMs } : {}),
      };
    case 'token':
      return { type: 'TOKEN', ...ref, taskId, text: event.text, seq: event.seq };
    case 'completed':
      return {
        type: 'COMPLETE',
        ...ref,
        taskId,
        seq: event.seq,
        result: event.result,
        finishReason: event.finishReason,
        usage: event.usage,
        ...(event.source ? { source: event.source } : {}),
      };
    case 'failed':
      return {
        type: 'ERROR',
        ...ref,
        taskId,
        seq: event.seq,
        code: event.error.code,
        message: event.error.message,
        ...(event.error.retryable !== undefined ? { retryable: event.error.retryable } : {}),
      };
    case 'cancelled':
      return { type: 'ERROR', ...ref, taskId, seq: event.seq, code: 'cancelled', message: event.reason };
  }
}

/** A refusal of the REST API as the envelope a WebSocket client gets: RATE_LIMITED for a 429. */
export function refusalMessage(problem: HttpError, id: Ref | undefined, taskId?: string): ServerMessage {
  const retryAfter = Number(problem.extra.headers?.['Retry-After']);
  const retryAfterMs = Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter * 1000 : null;
  if (problem.status === 429) {
    return {
      type: 'RATE_LIMITED',
      ...withRef(id),
      code: problem.code,
      message: problem.message,
      retryAfterMs,
    };
  }
  return {
    type: 'ERROR',
    ...withRef(id),
    ...(taskId !== undefined ? { taskId } : {}),
    code: problem.code,
    message: problem.message,
    status: problem.status,
    ...(problem.extra.field !== undefined ? { field: problem.extra.field } : {}),
    ...(retryAfterMs !== null ? { retryAfterMs } : {}),
  };
}
