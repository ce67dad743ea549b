import type { GenerationSpec } from '@llmq/contracts';

export interface UpstreamRequest {
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** One parsed server-sent event, in the provider-neutral form the client consumes. */
export interface StreamPiece {
  delta?: string;
  finishReason?: string;
  promptTokens?: number;
  completionTokens?: number;
  /** The provider's end-of-stream marker ([DONE], message_stop): without it a stream was cut. */
  done?: boolean;
  /** An error event inside an open stream. */
  error?: { message: string; type: string };
}

export interface Adapter {
  readonly kind: 'openai' | 'anthropic';
  request(spec: GenerationSpec, upstreamModel: string, apiKey: string | undefined): UpstreamRequest;
  /** Parses one SSE event (`event:` name, or null, and its data). */
  parse(event: string | null, data: string): StreamPiece | null;
}
