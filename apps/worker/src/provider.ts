import type { GenerationSpec, Usage } from '@llmq/contracts';

/** A provider error, classified once: retryable or not, and how long the provider asked us to wait. */
export class ProviderError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly retryable: boolean,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'ProviderError';
  }
}

export interface ChatResult {
  text: string;
  finishReason: string | null;
  usage: Usage | null;
}

export interface StreamChatOptions {
  baseUrl: string;
  apiKey?: string;
  spec: GenerationSpec;
  signal: AbortSignal;
  timeoutMs: number;
  onDelta: (text: string) => void;
}

const RETRYABLE_STATUS = new Set([408, 409, 429, 500, 502, 503, 504]);

function retryAfterMs(headers: Headers): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  const s = headers.get('retry-after');
  if (!s) return undefined;
  if (/^\d+(\.\d+)?$/.test(s)) return Math.ceil(Number(s) * 1000);
  const at = Date.parse(s);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * Calls an OpenAI-compatible `/chat/completions` with `stream: true` and hands each text delta to
 * `onDelta` as it arrives. A stream that ends without `[DONE]` is an error, never a silently
 * truncated result. (Breakers, routing and fallback arrive with the resilient client.)
 */
export async function streamChat(options: StreamChatOptions): Promise<ChatResult> {
  const { spec } = options;
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = AbortSignal.any([options.signal, timeout]);
  let response: Response;
  try {
    response = await fetch(`${options.baseUrl.replace(/\/$/, '')}/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
      },
      body: JSON.stringify({
        model: spec.model,
        messages: spec.messages,
        ...spec.params,
        stream: true,
        stream_options: { include_usage: true },
      }),
      signal,
    });
  } catch (error) {
    throw transportError(error, options.signal, timeout);
  }
  if (!response.ok) {
    const body = await response.text().catch(() => '');
    let message = `provider answered ${response.status}`;
    try {
      const parsed = JSON.parse(body) as { error?: { message?: string } };
      if (parsed.error?.message) message += `: ${parsed.error.message}`;
    } catch {
      // not JSON; the status says enough
    }
    throw new ProviderError(
      message,
      `upstream_${response.status}`,
      RETRYABLE_STATUS.has(response.status),
      response.status,
      retryAfterMs(response.headers),
    );
  }
  if (!response.body) throw new ProviderError('provider sent no body', 'upstream_empty', true);

  let text = '';
  let finishReason: string | null = null;
  let usage: Usage | null = null;
  let done = false;
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of response.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        const parsed = JSON.parse(data) as {
          choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
          usage?: Usage | null;
        };
        const choice = parsed.choices?.[0];
        const delta = choice?.delta?.content;
        if (delta) {
          text += delta;
          options.onDelta(delta);
        }
        if (choice?.finish_reason) finishReason = choice.finish_reason;
        if (parsed.usage) usage = parsed.usage;
      }
    }
  } catch (error) {
    throw transportError(error, options.signal, timeout);
  }
  if (!done) {
    throw new ProviderError(
      'the provider stream ended before [DONE] (cut mid-stream)',
      'upstream_stream_cut',
      true,
    );
  }
  return { text, finishReason, usage };
}

function transportError(error: unknown, cancel: AbortSignal, timeout: AbortSignal): Error {
  if (cancel.aborted) return cancel.reason instanceof Error ? cancel.reason : new Error('aborted');
  if (timeout.aborted)
    return new ProviderError('the provider did not finish in time', 'upstream_timeout', true);
  const message = error instanceof Error ? error.message : String(error);
  return new ProviderError(`provider connection failed: ${message}`, 'upstream_connection', true);
}
