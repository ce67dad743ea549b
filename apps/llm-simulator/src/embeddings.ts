import { z } from 'zod';
import { ApiError } from './errors';
import { fnv1a, mulberry32 } from './random';
import { parseBody } from './validation';

/** OpenAI's own limit on inputs per request. */
export const MAX_EMBEDDING_INPUTS = 2048;

const tokenArray = z.array(z.number().int().min(0)).min(1);

const embeddingsRequestSchema = z.object({
  model: z.string().min(1),
  input: z.union(
    [
      z.string().min(1),
      z.array(z.string().min(1)).min(1).max(MAX_EMBEDDING_INPUTS),
      tokenArray,
      z.array(tokenArray).min(1).max(MAX_EMBEDDING_INPUTS),
    ],
    { error: `expected a non-empty string, up to ${MAX_EMBEDDING_INPUTS} of them, or arrays of token ids` },
  ),
  encoding_format: z.enum(['float', 'base64']).nullish(),
  dimensions: z.number().int().min(1).nullish(),
});

export interface EmbeddingsRequest {
  readonly model: string;
  /** Token-id arrays arrive here as their numbers joined by spaces: text like any other. */
  readonly inputs: readonly { readonly text: string; readonly tokens: number }[];
  readonly encoding: 'float' | 'base64';
  readonly dimensions: number | undefined;
}

/** Validates an OpenAI embeddings request against an embedder of `maxDimensions`. */
export function parseEmbeddingsRequest(body: unknown, maxDimensions: number): EmbeddingsRequest {
  const request = parseBody(embeddingsRequestSchema, body);
  const dimensions = request.dimensions ?? undefined;
  if (dimensions !== undefined && dimensions > maxDimensions) {
    throw ApiError.invalidRequest(
      `Invalid value for 'dimensions': at most ${maxDimensions} are supported, got ${dimensions}.`,
      'dimensions',
      'invalid_value',
    );
  }
  return {
    model: request.model,
    inputs: normaliseInput(request.input),
    encoding: request.encoding_format ?? 'float',
    dimensions,
  };
}

type RawInput = z.output<typeof embeddingsRequestSchema>['input'];

function normaliseInput(input: RawInput): EmbeddingsRequest['inputs'] {
  if (typeof input === 'string') return [fromText(input)];
  if (isTokenArray(input)) return [fromTokens(input)];
  return input.map((item: string | number[]) =>
    typeof item === 'string' ? fromText(item) : fromTokens(item),
  );
}

function isTokenArray(input: Exclude<RawInput, string>): input is number[] {
  return typeof input[0] === 'number';
}

function fromText(text: string): EmbeddingsRequest['inputs'][number] {
  return { text, tokens: estimateTokens(text) };
}

function fromTokens(tokens: readonly number[]): EmbeddingsRequest['inputs'][number] {
  return { text: tokens.join(' '), tokens: tokens.length };
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

/** The `list` of embeddings OpenAI answers with, in the encoding the request asked for. */
export function embeddingsResponse(embedder: Embedder, request: EmbeddingsRequest): unknown {
  let promptTokens = 0;
  const data = request.inputs.map((input, index) => {
    promptTokens += input.tokens;
    const vector = embedder.embed(input.text, request.dimensions);
    const embedding = request.encoding === 'base64' ? toBase64(vector) : Array.from(vector);
    return { object: 'embedding', index, embedding };
  });
  return {
    object: 'list',
    data,
    model: request.model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  };
}

/** Word vectors are cached so batches that repeat vocabulary stay cheap; cleared when full. */
const MAX_CACHED_WORDS = 20_000;

/**
 * Bag-of-words embeddings: each word maps to a fixed pseudo-random unit vector, a text is
 * the normalised sum of its words. Deterministic, and texts that share words point in
 * similar directions, which is what semantic-cache and retrieval tests need.
 */
export class Embedder {
  private readonly words = new Map<string, Float32Array>();

  /** @param dimensions - length of every vector this embedder returns unless asked for fewer */
  constructor(readonly dimensions: number) {}

  /** A unit-length vector; `dimensions` truncates and renormalises, like OpenAI's v3 models. */
  embed(text: string, dimensions: number = this.dimensions): Float32Array {
    const sum = new Float64Array(dimensions);
    const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
    // Text without a single word (punctuation, emoji) still gets a stable vector of its own.
    for (const word of words.length > 0 ? words : [`\u0000${text}`]) {
      const vector = this.wordVector(word);
      for (let i = 0; i < dimensions; i++) sum[i]! += vector[i]!;
    }
    let norm = 0;
    for (let i = 0; i < dimensions; i++) norm += sum[i]! * sum[i]!;
    norm = Math.sqrt(norm) || 1;
    const unit = new Float32Array(dimensions);
    for (let i = 0; i < dimensions; i++) unit[i] = sum[i]! / norm;
    return unit;
  }

  private wordVector(word: string): Float32Array {
    const cached = this.words.get(word);
    if (cached) return cached;
    const random = mulberry32(fnv1a(word));
    const vector = new Float32Array(this.dimensions);
    for (let i = 0; i < vector.length; i++) vector[i] = random() * 2 - 1;
    if (this.words.size >= MAX_CACHED_WORDS) this.words.clear();
    this.words.set(word, vector);
    return vector;
  }
}

/** OpenAI's `encoding_format: "base64"`: the float32 values, little-endian, base64-encoded. */
export function toBase64(vector: Float32Array): string {
  const bytes = Buffer.allocUnsafe(vector.length * 4);
  for (let i = 0; i < vector.length; i++) bytes.writeFloatLE(vector[i]!, i * 4);
  return bytes.toString('base64');
}
