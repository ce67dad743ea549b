import type { Adapter } from './types';

/** Anthropic requires max_tokens; this is what a request without one gets. */
const DEFAULT_MAX_TOKENS = 4096;

const STOP_REASONS: Record<string, string> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  refusal: 'content_filter',
};

/**
 * The Anthropic Messages API. System and developer messages become the top-level `system`;
 * stop reasons map to OpenAI's finish reasons so jobs read the same whatever the provider.
 */
export const anthropicAdapter: Adapter = {
  kind: 'anthropic',
  request(spec, upstreamModel, apiKey) {
    const system = spec.messages
      .filter((m) => m.role === 'system' || m.role === 'developer')
      .map((m) => m.content)
      .join('\n\n');
    const messages = spec.messages
      .filter((m) => m.role === 'user' || m.role === 'assistant')
      .map((m) => ({ role: m.role, content: m.content }));
    const { max_tokens, temperature, top_p, stop } = spec.params;
    return {
      path: '/messages',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        'anthropic-version': '2023-06-01',
        ...(apiKey ? { 'x-api-key': apiKey } : {}),
      },
      body: JSON.stringify({
        model: upstreamModel,
        max_tokens: max_tokens ?? DEFAULT_MAX_TOKENS,
        messages,
        ...(system ? { system } : {}),
        ...(temperature !== undefined ? { temperature: Math.min(temperature, 1) } : {}),
        ...(top_p !== undefined ? { top_p } : {}),
        ...(stop !== undefined ? { stop_sequences: Array.isArray(stop) ? stop : [stop] } : {}),
        stream: true,
      }),
    };
  },
  parse(event, data) {
    const body = JSON.parse(data) as {
      type?: string;
      message?: { usage?: { input_tokens?: number; output_tokens?: number } };
      delta?: { type?: string; text?: string; stop_reason?: string | null };
      usage?: { output_tokens?: number };
      error?: { type?: string; message?: string };
    };
    switch (event ?? body.type) {
      case 'message_start': {
        const usage = body.message?.usage;
        return usage?.input_tokens !== undefined ? { promptTokens: usage.input_tokens } : {};
      }
      case 'content_block_delta':
        return body.delta?.type === 'text_delta' && body.delta.text ? { delta: body.delta.text } : {};
      case 'message_delta': {
        const reason = body.delta?.stop_reason;
        return {
          ...(reason ? { finishReason: STOP_REASONS[reason] ?? reason } : {}),
          ...(body.usage?.output_tokens !== undefined ? { completionTokens: body.usage.output_tokens } : {}),
        };
      }
      case 'message_stop':
        return { done: true };
      case 'error':
        return { error: { message: body.error?.message ?? 'error', type: body.error?.type ?? 'error' } };
      default:
        return null; // ping, content_block_start/stop
    }
  },
};
