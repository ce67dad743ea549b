import {
  LIMITS,
  conversationIdSchema,
  serviceTierPriority,
  type ChatMessage,
  type GenerateRequest,
} from '@llmq/contracts';
import { z } from 'zod';

/**
 * OpenAI's `POST /responses`, as far as llmq serves it: text in, text out. Unknown fields are
 * tolerated (the SDKs add new ones all the time); those that would change the answer and that
 * llmq cannot honour (tools, images and files, structured output, previous_response_id, prompt
 * templates) are refused by name rather than silently dropped.
 */
const ROLES = ['user', 'assistant', 'system', 'developer'] as const;

const textPartSchema = z.looseObject({ type: z.string() }).superRefine((part, ctx) => {
  if (part.type !== 'input_text' && part.type !== 'output_text') {
    ctx.addIssue({
      code: 'custom',
      path: ['type'],
      message: `content parts of type "${part.type}" are not supported; send input_text`,
    });
  } else if (typeof part.text !== 'string' || part.text.length > LIMITS.maxContentChars) {
    ctx.addIssue({
      code: 'custom',
      path: ['text'],
      message: `a text part needs a string "text" of at most ${LIMITS.maxContentChars} characters`,
    });
  }
});

const messageItemSchema = z.looseObject({
  type: z.literal('message').optional(),
  role: z.enum(ROLES),
  content: z.union([z.string().max(LIMITS.maxContentChars), z.array(textPartSchema).max(LIMITS.maxMessages)]),
});
type MessageItem = z.infer<typeof messageItemSchema>;

/** An input item: a message (OpenAI's "easy" form or the typed one); other item types are refused. */
const inputItemSchema = z.unknown().superRefine((item, ctx) => {
  const type = (item as { type?: unknown } | null)?.type;
  if (type !== undefined && type !== 'message') {
    ctx.addIssue({
      code: 'custom',
      path: ['type'],
      message: `input items of type "${String(type)}" are not supported; send messages`,
    });
    return;
  }
  const parsed = messageItemSchema.safeParse(item);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    }
  }
});

const metadataSchema = z
  .record(z.string().min(1).max(LIMITS.maxMetadataKeyChars), z.string().max(LIMITS.maxMetadataValueChars))
  .refine((m) => Object.keys(m).length <= LIMITS.maxMetadataKeys, {
    message: `at most ${LIMITS.maxMetadataKeys} metadata keys`,
  });

export const responseCreateSchema = z
  .looseObject({
    /** Default: the API's default model. */
    model: z.string().min(1).max(LIMITS.maxModelChars).optional(),
    input: z.union([
      z.string().min(1).max(LIMITS.maxContentChars),
      z.array(inputItemSchema).min(1).max(LIMITS.maxMessages),
    ]),
    instructions: z.string().max(LIMITS.maxContentChars).nullable().optional(),
    max_output_tokens: z.number().int().min(1).max(LIMITS.maxTokens).nullable().optional(),
    temperature: z.number().min(0).max(2).nullable().optional(),
    top_p: z.number().gt(0).max(1).nullable().optional(),
    metadata: metadataSchema.nullable().optional(),
    /** Answer at once with the queued response; the job goes on when the client leaves. */
    background: z.boolean().nullable().optional(),
    stream: z.boolean().nullable().optional(),
    /** An llmq conversation id (or `{ id }`): the server keeps the history. */
    conversation: z
      .union([conversationIdSchema, z.looseObject({ id: conversationIdSchema })])
      .nullable()
      .optional(),
    /** "flex" runs on llmq's batch tier; anything else is interactive. */
    service_tier: z.string().max(32).nullable().optional(),
  })
  .superRefine((body, ctx) => {
    const refuse = (field: string, message: string) =>
      ctx.addIssue({ code: 'custom', path: [field], message });
    if (Array.isArray(body.tools) && body.tools.length > 0) refuse('tools', 'tool calling is not supported');
    if (body.previous_response_id != null) {
      refuse(
        'previous_response_id',
        'previous_response_id is not supported; use conversation (kept server-side)',
      );
    }
    if (body.prompt != null) refuse('prompt', 'prompt templates are not supported');
    const format = (body.text as { format?: { type?: unknown } } | null | undefined)?.format;
    if (format?.type !== undefined && format.type !== 'text') {
      refuse('text', 'only the "text" format is supported');
    }
  });
export type ResponseCreateRequest = z.infer<typeof responseCreateSchema>;

function textOf(content: MessageItem['content']): string {
  return typeof content === 'string'
    ? content
    : content.map((p) => (p as { text?: string }).text ?? '').join('');
}

/**
 * A Responses request as llmq's own generation request. `instructions` become a leading system
 * message (and a leading system message is what a response reports as its instructions).
 */
export function responseToGenerateRequest(body: ResponseCreateRequest): GenerateRequest {
  const messages: ChatMessage[] = [];
  if (body.instructions) messages.push({ role: 'system', content: body.instructions });
  if (typeof body.input === 'string') {
    messages.push({ role: 'user', content: body.input });
  } else {
    for (const item of body.input as MessageItem[])
      messages.push({ role: item.role, content: textOf(item.content) });
  }
  const request: GenerateRequest = { messages, priority: serviceTierPriority(body.service_tier) };
  if (body.model !== undefined) request.model = body.model;
  if (body.temperature != null) request.temperature = body.temperature;
  if (body.top_p != null) request.top_p = body.top_p;
  if (body.max_output_tokens != null) request.max_tokens = body.max_output_tokens;
  if (body.metadata != null) request.metadata = body.metadata;
  const conversation = typeof body.conversation === 'string' ? body.conversation : body.conversation?.id;
  if (conversation !== undefined) request.conversationId = conversation;
  return request;
}
