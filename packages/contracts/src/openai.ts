import { z } from 'zod';
import { LIMITS, conversationIdSchema, type GenerateRequest, type Priority } from './generate';
import type { JobError, Usage } from './job';

/**
 * The OpenAI chat completions request, as far as llmq serves it. Unknown fields are tolerated
 * (SDKs add new ones all the time); fields that would change the answer and that llmq cannot
 * honour (tools, n > 1, logprobs, images) are refused by name rather than silently dropped.
 */
const textPartSchema = z.looseObject({
  type: z.literal('text'),
  text: z.string().max(LIMITS.maxContentChars),
});

const contentSchema = z.union([
  z.string().max(LIMITS.maxContentChars),
  z
    .array(
      z.looseObject({ type: z.string() }).superRefine((part, ctx) => {
        if (part.type !== 'text') {
          ctx.addIssue({
            code: 'custom',
            message: `content parts of type "${part.type}" are not supported; send text`,
          });
        } else if (!textPartSchema.safeParse(part).success) {
          ctx.addIssue({ code: 'custom', message: 'a text part needs a string "text"' });
        }
      }),
    )
    .max(LIMITS.maxMessages),
]);

const chatMessageSchema = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: contentSchema.nullable().optional(),
  name: z.string().max(64).optional(),
});

export const chatCompletionRequestSchema = z
  .looseObject({
    model: z.string().min(1).max(LIMITS.maxModelChars),
    messages: z.array(chatMessageSchema).min(1).max(LIMITS.maxMessages),
    temperature: z.number().min(0).max(2).nullable().optional(),
    top_p: z.number().gt(0).max(1).nullable().optional(),
    max_tokens: z.number().int().min(1).max(LIMITS.maxTokens).nullable().optional(),
    max_completion_tokens: z.number().int().min(1).max(LIMITS.maxTokens).nullable().optional(),
    seed: z.number().int().nullable().optional(),
    stop: z
      .union([
        z.string().min(1).max(LIMITS.maxStopChars),
        z.array(z.string().min(1).max(LIMITS.maxStopChars)).max(LIMITS.maxStop),
      ])
      .nullable()
      .optional(),
    n: z.literal(1, { message: 'only n = 1 is supported' }).nullable().optional(),
    stream: z.boolean().nullable().optional(),
    stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullable().optional(),
    metadata: z
      .record(z.string().min(1).max(LIMITS.maxMetadataKeyChars), z.string().max(LIMITS.maxMetadataValueChars))
      .refine((m) => Object.keys(m).length <= LIMITS.maxMetadataKeys, {
        message: `at most ${LIMITS.maxMetadataKeys} metadata keys`,
      })
      .nullable()
      .optional(),
    /** "flex" (OpenAI's slower, cheaper tier) runs on llmq's batch tier; anything else is interactive. */
    service_tier: z.string().max(32).nullable().optional(),
    /** llmq extension: continue a server-side conversation. */
    conversation_id: conversationIdSchema.optional(),
    /** llmq extension: keep the job running when the client disconnects (default: cancel it). */
    background: z.boolean().optional(),
  })
  .superRefine((body, ctx) => {
    for (const field of ['tools', 'functions', 'tool_choice', 'function_call'] as const) {
      if (
        body[field] !== undefined &&
        body[field] !== null &&
        !(Array.isArray(body[field]) && body[field].length === 0)
      ) {
        ctx.addIssue({ code: 'custom', path: [field], message: 'tool calling is not supported' });
      }
    }
    if (body.logprobs === true) {
      ctx.addIssue({ code: 'custom', path: ['logprobs'], message: 'logprobs are not supported' });
    }
    const format = body.response_format as { type?: unknown } | undefined | null;
    if (format && format.type !== undefined && format.type !== 'text') {
      ctx.addIssue({
        code: 'custom',
        path: ['response_format'],
        message: 'only the "text" response format is supported',
      });
    }
  });
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;

/** The text of a message's content: a string, or its text parts joined. */
function textOf(content: ChatCompletionRequest['messages'][number]['content']): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => (p as { text?: string }).text ?? '').join('');
}

/** An OpenAI chat completions body as llmq's own generation request. */
export function chatCompletionToGenerateRequest(body: ChatCompletionRequest): GenerateRequest {
  const request: GenerateRequest = {
    model: body.model,
    messages: body.messages.map((m) => ({
      role: m.role,
      content: textOf(m.content),
      ...(m.name !== undefined ? { name: m.name } : {}),
    })),
    priority: serviceTierPriority(body.service_tier),
  };
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (body.temperature != null) request.temperature = body.temperature;
  if (body.top_p != null) request.top_p = body.top_p;
  if (maxTokens != null) request.max_tokens = maxTokens;
  if (body.seed != null) request.seed = body.seed;
  if (body.stop != null && (typeof body.stop === 'string' || body.stop.length > 0)) request.stop = body.stop;
  if (body.metadata != null) request.metadata = body.metadata;
  if (body.conversation_id !== undefined) request.conversationId = body.conversation_id;
  return request;
}

export function serviceTierPriority(tier: string | null | undefined): Priority {
  return tier === 'flex' ? 'batch' : 'interactive';
}

/** OpenAI's id of a completion made by a job: stable, so a resumed stream keeps it. */
export const completionId = (jobId: string) => `chatcmpl-${jobId}`;

/** OpenAI's finish reasons; providers' own spellings map onto them. */
export function finishReasonOf(reason: string | null): 'stop' | 'length' | 'content_filter' {
  if (reason === 'length' || reason === 'max_tokens') return 'length';
  if (reason === 'content_filter') return 'content_filter';
  return 'stop';
}

/** A completed job as OpenAI's `chat.completion` object. */
export function toChatCompletion(job: {
  jobId: string;
  model: string;
  createdAt: Date;
  result: string;
  finishReason: string | null;
  usage: Usage | null;
}): ChatCompletion {
  return {
    id: completionId(job.jobId),
    object: 'chat.completion',
    created: Math.floor(job.createdAt.getTime() / 1000),
    model: job.model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: job.result, refusal: null },
        logprobs: null,
        finish_reason: finishReasonOf(job.finishReason),
      },
    ],
    usage: job.usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    system_fingerprint: null,
  };
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string; refusal: null };
    logprobs: null;
    finish_reason: 'stop' | 'length' | 'content_filter';
  }>;
  usage: Usage;
  system_fingerprint: null;
}

/** Codes of jobs that failed because of the request itself, not of the service or a provider. */
const REQUEST_ERRORS = new Set([
  'context_length_exceeded',
  'context_window_exceeded',
  'collection_not_found',
]);

/** OpenAI's error body: `{ error: { message, type, param, code } }`. */
export interface OpenAiErrorObject {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/**
 * A failed job's error as OpenAI reports a failed request: an upstream refusal keeps its status
 * (400, 404...), everything else is a server error. Used where no HTTP answer carries it (the
 * error file of a batch).
 */
export function openAiJobError(error: JobError): { status: number; body: OpenAiErrorObject } {
  const s = error.status;
  // Our own refusals of the request (a turn too long for the window, a RAG collection gone) have
  // no upstream status and will fail again: OpenAI answers those 400.
  const status =
    s !== undefined
      ? s >= 400 && s < 500 && s !== 429
        ? s
        : 500
      : REQUEST_ERRORS.has(error.code)
        ? 400
        : 500;
  return {
    status,
    body: {
      error: {
        message: error.message,
        type: status < 500 ? 'invalid_request_error' : 'server_error',
        param: null,
        code: error.code,
      },
    },
  };
}
