import type { ChatMessage } from '@llmq/contracts';
import { countPromptTokens, countTextTokens } from '@llmq/llm';

/** A retrieved chunk, as search returns it. */
export interface Source {
  chunkId: string;
  documentId: string;
  title: string | null;
  /** The chunk's position in its document. */
  seq: number;
  content: string;
  /** Similarity to the query; sources arrive best first. */
  score: number;
  tokens: number;
}

export interface RagPrompt {
  /** The conversation with the sources in its leading system message; unchanged if none fit. */
  messages: ChatMessage[];
  /** The sources in the prompt, in citation order: `[n]` cites `used[n - 1]`. */
  used: Source[];
  /** Prompt tokens of the context as a system message of its own (0 when no source fits). */
  contextTokens: number;
}

/** What the model is told about the sources; part of every cache key built from the prompt. */
export const RAG_INSTRUCTION =
  'Answer using the numbered sources below. Cite each source you rely on by its number in square ' +
  'brackets, like [1] or [2][3]. If the sources do not contain the answer, say so instead of guessing.';

const HEADER = `${RAG_INSTRUCTION}\n\nSources:`;

/**
 * Puts as many sources as fit in `budgetTokens` into the conversation's leading system message
 * (merged after an existing system or developer message, else a new one first). Sources are
 * taken best first; one whose formatted block does not fit is skipped and smaller ones after it
 * are still tried. The output depends on the inputs alone: it becomes part of a cache key.
 */
export function buildRagPrompt(messages: ChatMessage[], sources: Source[], budgetTokens: number): RagPrompt {
  const used: Source[] = [];
  const seen = new Set<string>();
  let context = HEADER;
  let contextTokens = contextTokensOf(context);
  if (contextTokens > budgetTokens) return { messages, used: [], contextTokens: 0 };
  for (const source of sources) {
    if (seen.has(source.chunkId) || source.content.trim() === '') continue;
    const block = formatSource(used.length + 1, source);
    // Blocks are counted apart (joins may merge a token or two); near the budget, the whole is.
    let tokens = contextTokens + countTextTokens(block);
    if (tokens > budgetTokens + EDGE_TOKENS) continue;
    if (tokens > budgetTokens - EDGE_TOKENS) tokens = contextTokensOf(context + block);
    if (tokens > budgetTokens) continue;
    seen.add(source.chunkId);
    used.push(source);
    context += block;
    contextTokens = tokens;
  }
  contextTokens = contextTokensOf(context);
  // Sums far from the edge could in theory undercount by more than EDGE_TOKENS: never exceed.
  while (contextTokens > budgetTokens && used.length > 0) {
    used.pop();
    context = HEADER + used.map((s, i) => formatSource(i + 1, s)).join('');
    contextTokens = contextTokensOf(context);
  }
  if (used.length === 0) return { messages, used: [], contextTokens: 0 };
  return { messages: withContext(messages, context), used, contextTokens };
}

/** How close to the budget a sum of separately counted blocks is checked by a count of the whole. */
const EDGE_TOKENS = 4;

/** `[n] Title` and the content, after a blank line. */
function formatSource(n: number, source: Source): string {
  const title = source.title?.replace(/\s+/g, ' ').trim() || 'Untitled';
  return `\n\n[${n}] ${title}\n${source.content.trim()}`;
}

function contextTokensOf(context: string): number {
  return countPromptTokens([{ role: 'system', content: context }]);
}

function withContext(messages: ChatMessage[], context: string): ChatMessage[] {
  const [first, ...rest] = messages;
  if (first && (first.role === 'system' || first.role === 'developer')) {
    const content = first.content.trim() === '' ? context : `${first.content}\n\n${context}`;
    return [{ ...first, content }, ...rest];
  }
  return [{ role: 'system', content: context }, ...messages];
}
