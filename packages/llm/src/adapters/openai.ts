import type { Adapter, StreamPiece } from './types';

interface Chunk {
  choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
  error?: { message?: string; type?: string };
}

/** OpenAI chat completions, streamed; fits any OpenAI-compatible server (vLLM, Ollama, llama.cpp…). */
export const openaiAdapter: Adapter = {
  kind: 'openai',
  request(spec, upstreamModel, apiKey) {
    return {
      path: '/chat/completions',
      headers: {
        'content-type': 'application/json',
        accept: 'text/event-stream',
        ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
      },
      body: JSON.stringify({
        model: upstreamModel,
        messages: spec.messages.map((m) => ({
          role: m.role,
          content: m.content,
          ...(m.name ? { name: m.name } : {}),
        })),
        ...spec.params,
        stream: true,
        stream_options: { include_usage: true },
      }),
    };
  },
  parse(_event, data) {
    if (data === '[DONE]') return { done: true };
    const chunk = JSON.parse(data) as Chunk;
    if (chunk.error)
      return { error: { message: chunk.error.message ?? 'error', type: chunk.error.type ?? 'error' } };
    const piece: StreamPiece = {};
    const choice = chunk.choices?.[0];
    if (choice?.delta?.content) piece.delta = choice.delta.content;
    if (choice?.finish_reason) piece.finishReason = choice.finish_reason;
    if (chunk.usage) {
      if (chunk.usage.prompt_tokens !== undefined) piece.promptTokens = chunk.usage.prompt_tokens;
      if (chunk.usage.completion_tokens !== undefined) piece.completionTokens = chunk.usage.completion_tokens;
    }
    return piece;
  },
};
