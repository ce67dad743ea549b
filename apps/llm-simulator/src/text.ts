import { mulberry32, seedsFromText, type Random } from './random';

/** A chat message reduced to what generation depends on: its role and its text. */
export interface PromptMessage {
  readonly role: string;
  readonly content: string;
}

export interface CompletionRequest {
  readonly model: string;
  readonly messages: readonly PromptMessage[];
  readonly seed?: number | undefined;
  /** Exact number of tokens to produce; finish_reason is then `length` (OpenAI's endpoint). */
  readonly maxTokens?: number | undefined;
  /**
   * Upper bound on the natural length instead (Anthropic's endpoint, where max_tokens is
   * required): finish_reason is `length` only when it cuts the answer short.
   */
  readonly tokenCap?: number | undefined;
  readonly stop?: readonly string[] | undefined;
}

export type FinishReason = 'stop' | 'length';

export interface Completion {
  /** One word each, with a leading space except the first: concatenated, they are the text. */
  readonly tokens: readonly string[];
  readonly finishReason: FinishReason;
  /** The stop sequence the text was cut before, if one was. */
  readonly stopSequence: string | undefined;
  readonly promptTokens: number;
}

/** Output length when the request sets no max_tokens: between this and the default maximum. */
export const MIN_NATURAL_TOKENS = 16;

/**
 * Deterministic text for (model, messages, seed): the same request always gets the same words.
 * max_tokens only truncates, so a shorter answer is a prefix of a longer one, as with a real
 * model at temperature 0.
 */
export function generateCompletion(request: CompletionRequest, defaultMaxTokens: number): Completion {
  const [textSeed, lengthSeed] = seedsFromText(
    JSON.stringify([request.model, request.messages.map((m) => [m.role, m.content]), request.seed ?? null]),
  );
  const lowest = Math.min(MIN_NATURAL_TOKENS, defaultMaxTokens);
  const natural = lowest + (lengthSeed % (defaultMaxTokens - lowest + 1));
  const count = request.maxTokens ?? Math.min(natural, request.tokenCap ?? Infinity);
  const limited = request.maxTokens !== undefined || count < natural;
  const words = generateWords(mulberry32(textSeed), count);
  const stopped = truncateAtStop(words, request.stop ?? []);
  return {
    tokens: stopped?.tokens ?? words,
    finishReason: stopped === undefined && limited ? 'length' : 'stop',
    stopSequence: stopped?.stop,
    promptTokens: countPromptTokens(request.messages),
  };
}

/** Roughly OpenAI's count: four characters a token plus a few tokens of framing per message. */
export function countPromptTokens(messages: readonly PromptMessage[]): number {
  let characters = 0;
  for (const message of messages) characters += message.content.length;
  return Math.ceil(characters / 4) + 4 * messages.length;
}

function generateWords(random: Random, count: number): string[] {
  const words: string[] = [];
  let sentenceLength = 0;
  let position = 0;
  while (words.length < count) {
    if (position === 0) sentenceLength = 4 + Math.floor(random() * 11);
    let word = VOCABULARY[Math.floor(random() * VOCABULARY.length)] ?? 'the';
    if (position === 0) word = word.charAt(0).toUpperCase() + word.slice(1);
    position += 1;
    if (position === sentenceLength) {
      word += '.';
      position = 0;
    } else if (random() < 0.08) {
      word += ',';
    }
    words.push(words.length === 0 ? word : ` ${word}`);
  }
  return words;
}

/** Cuts the tokens just before the earliest stop sequence, or returns undefined if none occurs. */
function truncateAtStop(
  tokens: readonly string[],
  stops: readonly string[],
): { tokens: string[]; stop: string } | undefined {
  const text = tokens.join('');
  let cut = -1;
  let matched = '';
  for (const stop of stops) {
    const at = stop === '' ? -1 : text.indexOf(stop);
    if (at >= 0 && (cut < 0 || at < cut)) {
      cut = at;
      matched = stop;
    }
  }
  if (cut < 0) return undefined;
  const kept: string[] = [];
  let length = 0;
  for (const token of tokens) {
    if (length + token.length > cut) {
      const part = token.slice(0, cut - length);
      if (part !== '') kept.push(part);
      break;
    }
    kept.push(token);
    length += token.length;
  }
  return { tokens: kept, stop: matched };
}

const VOCABULARY: readonly string[] = (
  'the a an of to in for on with by from at as into over under about between through after before ' +
  'queue job worker stream token model request response server client cache vector index record ' +
  'system service message signal value result answer question context prompt batch shard replica ' +
  'latency throughput budget limit retry timeout backoff window bucket channel event state graph ' +
  'river mountain forest garden harbor bridge village market library museum window lantern ' +
  'morning evening winter summer season weather cloud rain storm light shadow silence music ' +
  'quick slow quiet bright careful simple steady gentle ancient modern distant hidden open ' +
  'clear small large early late warm cold green golden silver patient curious honest ' +
  'runs builds reads writes moves holds carries follows measures returns waits listens ' +
  'finds keeps sends takes gives shows learns grows turns opens closes starts stops ' +
  'and but or so because while when where although unless until since ' +
  'often rarely always never slowly quickly together almost nearly only still again ' +
  'engineer traveler teacher student gardener captain author painter merchant pilot ' +
  'idea plan story map path road journey lesson pattern reason detail number line'
).split(' ');
