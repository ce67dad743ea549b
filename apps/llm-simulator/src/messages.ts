import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { MAX_COMPLETION_TOKENS } from './chat';
import { streamTokens, whenGenerated, type Generation, type StreamFormat } from './generation';
import { sendJson, type Exchange } from './http';
import { fnv1a } from './random';
import type { Completion, PromptMessage } from './text';
import { parseBody } from './validation';

/**
 * Anthropic's Messages API (`POST /v1/messages`). The answer is the very text the chat
 * endpoint gives for the equivalent request (see `parseMessagesRequest`), on the same timeline;
 * only the wire format differs.
 */

/** Text blocks are read; other block types (image, tool_result...) are accepted and add no text. */
const contentBlock = z
  .looseObject({ type: z.string(), text: z.unknown().optional() })
  .superRefine((block, ctx) => {
    if (block.type === 'text' && typeof block.text !== 'string') {
      const message = block.text === undefined ? 'Field required' : 'Input should be a valid string';
      ctx.addIssue({ code: 'custom', path: ['text'], message });
    }
  });

const textBlock = z.looseObject({ type: z.literal('text'), text: z.string() });

const messagesRequestSchema = z.object({
  model: z.string().min(1),
  max_tokens: z.number().int().min(1).max(MAX_COMPLETION_TOKENS),
  messages: z
    .array(
      z.object({
        role: z.enum(['user', 'assistant']),
        content: z.union([z.string(), z.array(contentBlock)]),
      }),
    )
    .min(1),
  system: z.union([z.string(), z.array(textBlock)]).nullish(),
  temperature: z.number().min(0).max(1).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  stop_sequences: z.array(z.string()).nullish(),
  stream: z.boolean().nullish(),
  metadata: z.looseObject({ user_id: z.string().max(256).nullish() }).nullish(),
});

export interface MessagesRequest {
  readonly model: string;
  /** The system prompt first (as a `system` message), then the conversation. */
  readonly messages: readonly PromptMessage[];
  readonly seed: number | undefined;
  /** A ceiling, as Anthropic's max_tokens is: the answer may end sooner (`end_turn`). */
  readonly tokenCap: number;
  readonly stop: readonly string[];
  readonly stream: boolean;
}

/**
 * Validates an Anthropic request (unknown fields are ignored) and maps it onto the chat
 * endpoint's generation input: `system` becomes a leading system message and
 * `metadata.user_id` plays the part of OpenAI's seed (an integer string is that very seed).
 */
export function parseMessagesRequest(body: unknown): MessagesRequest {
  const request = parseBody(messagesRequestSchema, body, 'anthropic');
  const system =
    request.system === undefined || request.system === null
      ? []
      : [{ role: 'system', content: blocksText(request.system) }];
  return {
    model: request.model,
    messages: [...system, ...request.messages.map((m) => ({ role: m.role, content: blocksText(m.content) }))],
    seed: seedOf(request.metadata?.user_id ?? undefined),
    tokenCap: request.max_tokens,
    stop: request.stop_sequences ?? [],
    stream: request.stream === true,
  };
}

function blocksText(content: string | readonly { type: string; text?: unknown }[]): string {
  if (typeof content === 'string') return content;
  return content.map((block) => (block.type === 'text' ? String(block.text) : '')).join('');
}

function seedOf(userId: string | undefined): number | undefined {
  if (userId === undefined) return undefined;
  const integer = /^-?\d+$/.test(userId) ? Number(userId) : NaN;
  return Number.isSafeInteger(integer) ? integer : fnv1a(userId);
}

export interface MessageAnswer extends Generation {
  readonly request: MessagesRequest;
}

/** Answers with one `message` object once the whole answer would have been generated. */
export function answerMessage(exchange: Exchange, answer: MessageAnswer): void {
  const { completion, request } = answer;
  whenGenerated(exchange, answer, () =>
    sendJson(
      exchange.res,
      200,
      {
        id: newMessageId(),
        type: 'message',
        role: 'assistant',
        model: request.model,
        content: [{ type: 'text', text: completion.tokens.join('') }],
        ...stopOf(completion),
        usage: { input_tokens: completion.promptTokens, output_tokens: completion.tokens.length },
      },
      answer.headers,
    ),
  );
}

/** Streams Anthropic's event sequence on the shared token timeline (generation.ts). */
export function streamMessage(exchange: Exchange, answer: MessageAnswer): void {
  const { completion, request } = answer;
  streamTokens(
    exchange,
    answer,
    new MessageEventFormat(newMessageId(), request.model, completion.promptTokens),
  );
}

function newMessageId(): string {
  return `msg_${randomUUID().replaceAll('-', '')}`;
}

function stopOf(completion: Completion): { stop_reason: string; stop_sequence: string | null } {
  if (completion.stopSequence !== undefined) {
    return { stop_reason: 'stop_sequence', stop_sequence: completion.stopSequence };
  }
  return {
    stop_reason: completion.finishReason === 'length' ? 'max_tokens' : 'end_turn',
    stop_sequence: null,
  };
}

function event(name: string, data: string): string {
  return `event: ${name}\ndata: ${data}\n\n`;
}

/**
 * Anthropic's streaming events: message_start, content_block_start, ping, one
 * content_block_delta per token, content_block_stop, message_delta, message_stop. The delta
 * prefix is computed once, because a delta per token is the hot path under load.
 */
class MessageEventFormat implements StreamFormat {
  constructor(
    private readonly id: string,
    private readonly model: string,
    private readonly inputTokens: number,
  ) {}

  start(): string {
    const message = {
      id: this.id,
      type: 'message',
      role: 'assistant',
      model: this.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: this.inputTokens, output_tokens: 0 },
    };
    return (
      event('message_start', JSON.stringify({ type: 'message_start', message })) +
      event(
        'content_block_start',
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
      ) +
      event('ping', '{"type":"ping"}')
    );
  }

  content(token: string): string {
    return `${DELTA_HEAD}${JSON.stringify(token)}}}\n\n`;
  }

  end(completion: Completion): string {
    const delta = {
      type: 'message_delta',
      delta: stopOf(completion),
      usage: { output_tokens: completion.tokens.length },
    };
    return (
      event('content_block_stop', '{"type":"content_block_stop","index":0}') +
      event('message_delta', JSON.stringify(delta)) +
      event('message_stop', '{"type":"message_stop"}')
    );
  }
}

const DELTA_HEAD =
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":';
