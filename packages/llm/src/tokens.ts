import type { ChatMessage, Usage } from '@llmq/contracts';
import { countTokens } from 'gpt-tokenizer';

/**
 * BPE merges within one pre-tokenized piece cost time quadratic in its length, and a run of one
 * character class (400k spaces, or 'x' repeated) is one piece: gpt-tokenizer takes minutes on
 * it. Long runs are cut into pieces of at most 256 characters and counted apart, which bounds the
 * cost to linear at the price of at most one extra token per cut (no real text has such runs).
 */
const LONG_RUN = /\s{257}|\S{257}/;
const RUN_PIECE = /(\s{256}|\S{256})/;

function boundedCount(text: string): number {
  if (!LONG_RUN.test(text)) return countTokens(text);
  let n = 0;
  for (const piece of text.split(RUN_PIECE)) if (piece !== '') n += countTokens(piece);
  return n;
}

/** Framing tokens each chat message costs beyond its content (OpenAI's published overhead). */
const PER_MESSAGE = 4;

/** Prompt tokens with a real BPE tokenizer (o200k): close for OpenAI models, an estimate for others. */
export function countPromptTokens(messages: ChatMessage[]): number {
  let n = 3;
  for (const m of messages) n += PER_MESSAGE + boundedCount(m.content);
  return n;
}

export function countTextTokens(text: string): number {
  return text === '' ? 0 : boundedCount(text);
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
