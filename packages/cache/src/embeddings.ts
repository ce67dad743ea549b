import type { ChatMessage } from '@llmq/contracts';

export interface EmbeddingsOptions {
  /** OpenAI-compatible base URL (…/v1). */
  baseUrl: string;
  model: string;
  apiKey?: string;
  /** @defaultValue 2000 */
  timeoutMs?: number;
}

/** An OpenAI-compatible `/v1/embeddings` client (the simulator's by default). */
export class EmbeddingsClient {
  constructor(private readonly o: EmbeddingsOptions) {}

  async embed(text: string): Promise<number[]> {
    const res = await fetch(`${this.o.baseUrl.replace(/\/$/, '')}/embeddings`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.o.apiKey ? { authorization: `Bearer ${this.o.apiKey}` } : {}),
      },
      body: JSON.stringify({ model: this.o.model, input: text, encoding_format: 'float' }),
      signal: AbortSignal.timeout(this.o.timeoutMs ?? 2000),
    });
    if (!res.ok) throw new Error(`embeddings provider answered ${res.status}`);
    const body = (await res.json()) as { data?: { embedding?: number[] }[] };
    const embedding = body.data?.[0]?.embedding;
    if (!Array.isArray(embedding)) throw new Error('embeddings provider sent no embedding');
    return embedding;
  }
}

/** The text a semantic match compares: the conversation, role-tagged. */
export function promptText(messages: ChatMessage[]): string {
  return messages.map((m) => `${m.role}: ${m.content}`).join('\n');
}
