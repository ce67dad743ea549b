import { z } from 'zod';
import { ragOptionsSchema } from './rag';

/** Limits on every input; the API enforces them before anything is stored. */
export const LIMITS = {
  maxMessages: 512,
  maxContentChars: 400_000,
  maxStop: 4,
  maxStopChars: 256,
  maxMetadataKeys: 16,
  maxMetadataKeyChars: 64,
  maxMetadataValueChars: 512,
  maxModelChars: 128,
  maxTokens: 131_072,
} as const;

export const messageSchema = z.strictObject({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.string().max(LIMITS.maxContentChars),
  name: z.string().max(64).optional(),
});
export type ChatMessage = z.infer<typeof messageSchema>;

export const samplingSchema = z.strictObject({
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  max_tokens: z.number().int().min(1).max(LIMITS.maxTokens).optional(),
  seed: z
    .number()
    .int()
    .min(-(2 ** 53) + 1)
    .max(2 ** 53 - 1)
    .optional(),
  stop: z
    .union([
      z.string().min(1).max(LIMITS.maxStopChars),
      z.array(z.string().min(1).max(LIMITS.maxStopChars)).min(1).max(LIMITS.maxStop),
    ])
    .optional(),
});
export type SamplingParams = z.infer<typeof samplingSchema>;

/**
 * Priority tiers. `interactive` (a person is waiting) and `batch` (throughput work) run on
 * separate queues with separate worker capacity, so interactive work never waits behind batch.
 */
export const PRIORITIES = ['interactive', 'batch'] as const;
export const prioritySchema = z.enum(PRIORITIES);
export type Priority = z.infer<typeof prioritySchema>;
/** What a request without `priority` gets. */
export const DEFAULT_PRIORITY: Priority = 'interactive';

/**
 * A conversation's id, chosen by the client (a UUID, a chat's id...), scoped to its tenant. A
 * request naming one adds a turn: the server keeps the history and runs the turns in order.
 */
export const conversationIdSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._:-]+$/, 'conversation ids use letters, digits and . _ : -');

const metadataSchema = z
  .record(z.string().min(1).max(LIMITS.maxMetadataKeyChars), z.string().max(LIMITS.maxMetadataValueChars))
  .refine((m) => Object.keys(m).length <= LIMITS.maxMetadataKeys, {
    message: `at most ${LIMITS.maxMetadataKeys} metadata keys`,
  });

/**
 * `POST /api/generate`. Either `messages` (chat form) or `prompt` (a single user turn), never both.
 * Unknown fields are rejected, so a typo such as `max_token` is an error rather than silently ignored.
 */
export const generateRequestSchema = samplingSchema
  .extend({
    model: z
      .string()
      .min(1)
      .max(LIMITS.maxModelChars)
      .regex(/^[A-Za-z0-9._:/-]+$/, 'model names use letters, digits and . _ : / -')
      .optional(),
    messages: z.array(messageSchema).min(1).max(LIMITS.maxMessages).optional(),
    prompt: z.string().min(1).max(LIMITS.maxContentChars).optional(),
    metadata: metadataSchema.optional(),
    /** Which queue the job goes to. @defaultValue "interactive" */
    priority: prioritySchema.optional(),
    /** Answer from the tenant's collection: the worker retrieves context and adds it to the prompt. */
    rag: ragOptionsSchema.optional(),
    /** Continue this conversation: its earlier turns (kept server-side) come before `messages`. */
    conversationId: conversationIdSchema.optional(),
  })
  .superRefine((body, ctx) => {
    if (body.messages === undefined && body.prompt === undefined) {
      ctx.addIssue({ code: 'custom', path: ['messages'], message: 'either messages or prompt is required' });
    }
    if (body.messages !== undefined && body.prompt !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['prompt'], message: 'send messages or prompt, not both' });
    }
  });
export type GenerateRequest = z.infer<typeof generateRequestSchema>;

/** What a worker needs to run a generation: the request after defaults and normalisation. */
export const generationSpecSchema = z.object({
  model: z.string(),
  messages: z.array(messageSchema).min(1),
  params: samplingSchema,
  /** Retrieval the worker does before the call; the messages sent upstream then carry the context. */
  rag: ragOptionsSchema.optional(),
  /** A turn of this conversation: the worker puts the history before `messages`, fitted to the window. */
  conversation: z.object({ id: conversationIdSchema }).optional(),
});
export type GenerationSpec = z.infer<typeof generationSpecSchema>;

/** Turns a validated request into the canonical spec stored with the job. */
export function toGenerationSpec(request: GenerateRequest, defaultModel: string): GenerationSpec {
  const messages = request.messages ?? [{ role: 'user' as const, content: request.prompt ?? '' }];
  const params: SamplingParams = {};
  if (request.temperature !== undefined) params.temperature = request.temperature;
  if (request.top_p !== undefined) params.top_p = request.top_p;
  if (request.max_tokens !== undefined) params.max_tokens = request.max_tokens;
  if (request.seed !== undefined) params.seed = request.seed;
  if (request.stop !== undefined) params.stop = request.stop;
  return {
    model: request.model ?? defaultModel,
    messages,
    params,
    ...(request.rag !== undefined ? { rag: request.rag } : {}),
    ...(request.conversationId !== undefined ? { conversation: { id: request.conversationId } } : {}),
  };
}
