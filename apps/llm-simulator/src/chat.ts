import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { streamTokens, whenGenerated, type Generation, type StreamFormat } from './generation';
import { sendJson, type Exchange } from './http';
import type { Completion, PromptMessage } from './text';
import { parseBody } from './validation';

/** Upper bound on max_tokens, so one request cannot make the simulator build a huge answer. */
export const MAX_COMPLETION_TOKENS = 65_536;

const tokenLimit = z.number().int().min(1).max(MAX_COMPLETION_TOKENS).nullish();

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });

const chatRequestSchema = z.object({
  model: z.string().min(1),
  messages: z
    .array(
      z.object({
        role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
        content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
      }),
    )
    .min(1),
  max_tokens: tokenLimit,
  max_completion_tokens: tokenLimit,
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullish(),
  n: z.literal(1, { error: 'the simulator only produces one choice' }).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
});

export interface ChatRequest {
  readonly model: string;
  readonly messages: readonly PromptMessage[];
  readonly seed: number | undefined;
  readonly maxTokens: number | undefined;
  readonly stop: readonly string[];
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

/** Validates an OpenAI chat request (unknown fields are ignored) and keeps what matters here. */
export function parseChatRequest(body: unknown): ChatRequest {
  const request = parseBody(chatRequestSchema, body);
  return {
    model: request.model,
    messages: request.messages.map((m) => ({ role: m.role, content: contentText(m.content) })),
    seed: request.seed ?? undefined,
    maxTokens: request.max_completion_tokens ?? request.max_tokens ?? undefined,
    stop: typeof request.stop === 'string' ? [request.stop] : (request.stop ?? []),
    stream: request.stream === true,
    includeUsage: request.stream_options?.include_usage === true,
  };
}

function contentText(content: string | readonly { text?: string | undefined }[] | null | undefined): string {
  if (typeof content === 'string') return content;
  return (content ?? []).map((part) => part.text ?? '').join('');
}

export interface ChatAnswer extends Generation {
  readonly request: ChatRequest;
}

/** Answers with one `chat.completion` object once the whole answer would have been generated. */
export function answerChat(exchange: Exchange, answer: ChatAnswer): void {
  const { completion, request } = answer;
  whenGenerated(exchange, answer, () =>
    sendJson(
      exchange.res,
      200,
      {
        id: newCompletionId(),
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: request.model,
        system_fingerprint: SYSTEM_FINGERPRINT,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: completion.tokens.join(''), refusal: null },
            logprobs: null,
            finish_reason: completion.finishReason,
          },
        ],
        usage: usageOf(completion),
      },
      answer.headers,
    ),
  );
}

/** Streams `chat.completion.chunk` events on the shared token timeline (generation.ts). */
export function streamChat(exchange: Exchange, answer: ChatAnswer): void {
  const { request } = answer;
  streamTokens(exchange, answer, new ChunkFormat(newCompletionId(), request.model, request.includeUsage));
}

const SYSTEM_FINGERPRINT = 'fp_llmq_simulator';

function newCompletionId(): string {
  return `chatcmpl-${randomUUID().replaceAll('-', '')}`;
}

function usageOf(completion: Completion): Record<string, number> {
  const completionTokens = completion.tokens.length;
  return {
    prompt_tokens: completion.promptTokens,
    completion_tokens: completionTokens,
    total_tokens: completion.promptTokens + completionTokens,
  };
}

/**
 * `chat.completion.chunk` lines built from a prefix computed once per stream, because
 * serialising a whole object per token is the hot path under load.
 */
class ChunkFormat implements StreamFormat {
  private readonly head: string;
  private readonly usageTail: string;

  constructor(
    id: string,
    model: string,
    private readonly includeUsage: boolean,
  ) {
    const created = Math.floor(Date.now() / 1000);
    this.head =
      `data: {"id":${JSON.stringify(id)},"object":"chat.completion.chunk","created":${created},` +
      `"model":${JSON.stringify(model)},"system_fingerprint":"${SYSTEM_FINGERPRINT}","choices":[`;
    // With include_usage OpenAI sends `"usage":null` on every chunk but the usage one.
    this.usageTail = includeUsage ? ',"usage":null' : '';
  }

  start(): string {
    return this.choice('{"role":"assistant","content":"","refusal":null}', 'null');
  }

  content(token: string): string {
    return this.choice(`{"content":${JSON.stringify(token)}}`, 'null');
  }

  /** The finish_reason chunk, the usage chunk if asked for, and the terminator. */
  end(completion: Completion): string {
    const finish = this.choice('{}', `"${completion.finishReason}"`);
    const usage = this.includeUsage
      ? `${this.head}],"usage":${JSON.stringify(usageOf(completion))}}\n\n`
      : '';
    return `${finish}${usage}data: [DONE]\n\n`;
  }

  private choice(delta: string, finishReason: string): string {
    return `${this.head}{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finishReason}}]${this.usageTail}}\n\n`;
  }
}
