import type { ChatMessage, Usage } from '@llmq/contracts';
import { countTokens } from 'gpt-tokenizer';

/** Framing tokens each chat message costs beyond its content (OpenAI's published overhead). */
const PER_MESSAGE = 4;

/** Prompt tokens with a real BPE tokenizer (o200k): close for OpenAI models, an estimate for others. */
export function countPromptTokens(messages: ChatMessage[]): number {
  let n = 3;
  for (const m of messages) n += PER_MESSAGE + countTokens(m.content);
  return n;
}

export function countTextTokens(text: string): number {
  return text === '' ? 0 : countTokens(text);
}

export interface Price {
  inputPerMillion: number;
  outputPerMillion: number;
}

/** Cost in USD, rounded to a millionth of a dollar. */
export function costOf(usage: Usage, price: Price): number {
  const usd =
    (usage.prompt_tokens * price.inputPerMillion + usage.completion_tokens * price.outputPerMillion) / 1e6;
  return Math.round(usd * 1e6) / 1e6;
}
