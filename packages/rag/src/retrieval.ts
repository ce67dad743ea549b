import type { GenerationSpec, SourceView } from '@llmq/contracts';
import { countPromptTokens } from '@llmq/llm';
import { buildRagPrompt } from './context';
import type { Embedder } from './embedder';
import type { RagRepository } from './repository';

/** A retrieval that cannot succeed by trying again: the job fails with this code. */
export class RetrievalError extends Error {
  constructor(
    readonly code: 'collection_not_found' | 'context_window_exceeded' | 'rag_unavailable',
    message: string,
  ) {
    super(message);
    this.name = 'RetrievalError';
  }
}

export interface RetrievalOptions {
  repository: RagRepository;
  embedder: Embedder;
  /** The context window of a (public) model name. */
  contextWindow: (model: string) => number;
  /** The most context tokens put into one prompt, whatever the window allows. @defaultValue 4000 */
  maxContextTokens?: number;
  /** Completion tokens assumed for a request without max_tokens. @defaultValue 1024 */
  defaultMaxTokens?: number;
}

/** Tokens kept free of context: the model's reply framing and tokenizer differences. */
const MARGIN_TOKENS = 64;
const MAX_QUERY_CHARS = 8000;

/**
 * Turns a `rag` request into the prompt the model gets: embeds the question (the last user
 * message), searches the tenant's collection (on a replica that has replayed the request's
 * consistency token), fits the best chunks into what the context window leaves, and returns the
 * spec to send (without `rag`, its messages carrying the context) and the sources used.
 */
export class Retrieval {
  constructor(private readonly o: RetrievalOptions) {}

  async build(
    tenantId: string,
    spec: GenerationSpec,
  ): Promise<{ spec: GenerationSpec; sources: SourceView[] }> {
    const { rag, ...plain } = spec;
    if (!rag) return { spec, sources: [] };
    const minLsn = rag.consistencyToken ?? null;
    const collection = await this.o.repository.getCollection(tenantId, rag.collection, minLsn);
    if (!collection) {
      throw new RetrievalError('collection_not_found', `collection "${rag.collection}" does not exist`);
    }
    const question = [...spec.messages].reverse().find((m) => m.role === 'user') ?? spec.messages.at(-1)!;
    const query = truncate(question.content, MAX_QUERY_CHARS).trim();
    if (query === '') return { spec: plain, sources: [] }; // nothing to search for
    const embedding = await this.o.embedder.embed(query);
    const hits = await this.o.repository.search(tenantId, collection.id, embedding, {
      k: rag.topK,
      minScore: rag.minScore,
      ...(rag.filter ? { filter: rag.filter } : {}),
      minLsn,
    });
    const reply = spec.params.max_tokens ?? this.o.defaultMaxTokens ?? 1024;
    const room = this.o.contextWindow(spec.model) - countPromptTokens(spec.messages) - reply - MARGIN_TOKENS;
    if (room < 0) {
      throw new RetrievalError(
        'context_window_exceeded',
        `the prompt and max_tokens (${reply}) already fill ${spec.model}'s context window; there is no room for sources`,
      );
    }
    const budget = Math.min(room, this.o.maxContextTokens ?? 4000);
    const prompt = buildRagPrompt(spec.messages, hits, budget);
    return {
      spec: { ...plain, messages: prompt.messages },
      sources: prompt.used.map((s) => ({
        documentId: s.documentId,
        chunkId: s.chunkId,
        title: s.title,
        seq: s.seq,
        score: Math.round(s.score * 1e4) / 1e4,
      })),
    };
  }
}

/** The first `max` UTF-16 units of `text`, never ending in half a surrogate pair. */
function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}
