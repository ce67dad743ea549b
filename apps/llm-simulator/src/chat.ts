import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { jittered, type Timing } from './controls';
import { sendJson, type Exchange } from './http';
import type { Stats } from './stats';
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

/** How fast (and whether completely) the tokens of one answer are delivered. */
export interface Pace {
  readonly firstDelay: () => number;
  readonly gap: () => number;
  /** Destroy the connection after this many content tokens (the cut-after fault). */
  readonly cutAfter: number | undefined;
}

export function paceFor(timing: Timing, fault: { cutAfter?: number; trickleMs?: number } = {}): Pace {
  const { trickleMs } = fault;
  return {
    firstDelay: () => jittered(timing.ttftMs, timing.jitter),
    gap: trickleMs === undefined ? () => jittered(timing.tokenMs, timing.jitter) : () => trickleMs,
    cutAfter: fault.cutAfter,
  };
}

export interface ChatAnswer {
  readonly request: ChatRequest;
  readonly completion: Completion;
  readonly pace: Pace;
  readonly headers: Readonly<Record<string, string>>;
  readonly stats: Stats;
}

/** Answers with one `chat.completion` object once the whole answer would have been generated. */
export function answerChat(exchange: Exchange, answer: ChatAnswer): void {
  const { completion, pace, request } = answer;
  const generated = Math.min(pace.cutAfter ?? Infinity, completion.tokens.length);
  let delay = pace.firstDelay();
  for (let i = 1; i < generated; i++) delay += pace.gap();
  const respond = (): void => {
    if (pace.cutAfter !== undefined) return exchange.cut();
    const content = completion.tokens.join('');
    answer.stats.addTokens(completion.tokens.length);
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
            message: { role: 'assistant', content, refusal: null },
            logprobs: null,
            finish_reason: completion.finishReason,
          },
        ],
        usage: usageOf(completion),
      },
      answer.headers,
    );
  };
  if (delay <= 0) return respond();
  const timer = setTimeout(respond, delay);
  exchange.onAbort(() => clearTimeout(timer));
}

/**
 * Streams the answer as server-sent events. Each token has a due time on one timeline
 * (start + TTFT + gaps); a timer wakes for the next one and writes every token already due
 * in a single write. Unloaded, that is one write per token; under load, late timers batch
 * tokens instead of stretching every stream, so the simulator keeps its promised timing and
 * spends fewer syscalls exactly when it is short of CPU. A zero-delay stream is one write.
 */
export function streamChat(exchange: Exchange, answer: ChatAnswer): void {
  const { res } = exchange;
  const { completion, pace, stats } = answer;
  const { tokens } = completion;
  const chunks = new ChunkFormat(newCompletionId(), answer.request.model, answer.request.includeUsage);
  const cutAt = pace.cutAfter === undefined ? undefined : Math.min(pace.cutAfter, tokens.length);
  let next = 0;
  let due = performance.now() + pace.firstDelay();
  let timer: NodeJS.Timeout | undefined;

  const emit = (): void => {
    timer = undefined;
    const now = performance.now();
    let out = next === 0 ? chunks.role() : '';
    const before = next;
    while (next < tokens.length && next !== cutAt && due <= now + TIMER_SLACK_MS) {
      out += chunks.content(tokens[next] ?? '');
      next += 1;
      if (next < tokens.length) due += pace.gap();
    }
    stats.addTokens(next - before);
    if (next === cutAt) {
      // Flush what was generated before the cut, or the client would not see those tokens.
      exchange.settle('faulted');
      if (out === '') exchange.cut();
      else res.write(out, () => exchange.cut());
    } else if (next === tokens.length) {
      res.end(out + chunks.end(completion));
    } else {
      if (out !== '') res.write(out);
      timer = setTimeout(emit, Math.max(0, Math.round(due - now)));
    }
  };

  res.writeHead(200, { ...answer.headers, ...SSE_HEADERS });
  exchange.onAbort(() => clearTimeout(timer));
  const wait = due - performance.now();
  if (wait <= TIMER_SLACK_MS) return emit();
  res.flushHeaders();
  timer = setTimeout(emit, Math.round(wait));
}

/** Tokens due within this many milliseconds go out now rather than after a 1 ms timer. */
const TIMER_SLACK_MS = 1;

const SYSTEM_FINGERPRINT = 'fp_llmq_simulator';

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

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
class ChunkFormat {
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

  role(): string {
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
