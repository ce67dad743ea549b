import { countTextTokens } from '@llmq/llm';

export interface ChunkOptions {
  /** Upper bound on every chunk's tokens (o200k, as `countTextTokens` counts them); at least 16. */
  maxTokens: number;
  /**
   * Tokens of the previous chunk's end repeated at the start of the next one, taken as whole
   * sentences (or words), so a fact cut at a boundary is still whole in one chunk. Below maxTokens / 2.
   */
  overlapTokens: number;
}

export interface Chunk {
  /** Position in the document, from 0. */
  seq: number;
  /**
   * The text, trimmed. Inside a piece that was kept whole it is verbatim; where pieces were cut
   * apart and packed again, the whitespace between them becomes a blank line, a line break or a space.
   */
  content: string;
  /** `countTextTokens(content)`. */
  tokens: number;
}

/** A piece of the text that is never split further: it fits in a chunk on its own. */
interface Unit {
  text: string;
  tokens: number;
  /** What joins it to the unit before it: "\n\n", "\n", " " or "" (the original gap, normalised). */
  joiner: string;
  /** A markdown heading line. */
  heading: boolean;
}

interface Span {
  start: number;
  end: number;
  heading?: boolean;
}

/** How finely a span has been cut, coarsest first. */
const Level = { Paragraph: 0, Sentence: 1, Word: 2, Character: 3 } as const;
type Level = (typeof Level)[keyof typeof Level];

/**
 * Spans this many characters per allowed token are not counted before being split: prose runs
 * about 4 characters a token, so they cannot fit, and counting them would be a wasted pass.
 */
const SURELY_TOO_LONG_CHARS_PER_TOKEN = 12;

/**
 * Splits a document into chunks of at most `maxTokens` tokens, cutting at the coarsest boundary
 * that works: paragraphs (blank lines, markdown headings, fenced code blocks), then sentences,
 * words and, for a single giant "word", characters. Pieces are packed greedily; consecutive chunks overlap by
 * about `overlapTokens`. Deterministic; linear in the text's length.
 */
export function chunkText(text: string, options: ChunkOptions): Chunk[] {
  validate(options);
  const cut: Cutting = { text, max: options.maxTokens, units: [], counted: new Map() };
  let previousEnd = -1;
  for (const span of paragraphSpans(text)) {
    const joiner = previousEnd < 0 ? '' : normaliseGap(text.slice(previousEnd, span.start));
    pushUnits(cut, span, joiner, Level.Paragraph);
    previousEnd = span.end;
  }
  return pack(cut.units, options);
}

function validate({ maxTokens, overlapTokens }: ChunkOptions): void {
  if (!Number.isInteger(maxTokens) || maxTokens < 16) {
    throw new RangeError(`maxTokens must be an integer of at least 16, got ${maxTokens}`);
  }
  if (!Number.isInteger(overlapTokens) || overlapTokens < 0 || overlapTokens >= maxTokens / 2) {
    throw new RangeError(
      `overlapTokens must be an integer from 0 to below half of maxTokens (${maxTokens / 2}), got ${overlapTokens}`,
    );
  }
}

/** The state of cutting one text into units. */
interface Cutting {
  text: string;
  max: number;
  units: Unit[];
  /**
   * Counts of short pieces: text cut to lines or words repeats them (a million one-letter lines
   * would otherwise be a million calls into the tokenizer, whose per-call cost dominates there).
   */
  counted: Map<string, number>;
}

const MEMO_MAX_CHARS = 32;

function countPiece(cut: Cutting, content: string): number {
  if (content.length > MEMO_MAX_CHARS) return countTextTokens(content);
  let tokens = cut.counted.get(content);
  if (tokens === undefined) cut.counted.set(content, (tokens = countTextTokens(content)));
  return tokens;
}

/** Appends `span` as one unit if it fits, else its pieces at the next finer level. */
function pushUnits(cut: Cutting, span: Span, joiner: string, level: Level): void {
  const { text, max } = cut;
  if (level === Level.Character) return pushCharacterUnits(cut, span, joiner);
  if (span.end - span.start <= max * SURELY_TOO_LONG_CHARS_PER_TOKEN) {
    const content = text.slice(span.start, span.end);
    const tokens = countPiece(cut, content);
    if (tokens <= max) {
      cut.units.push({ text: content, tokens, joiner, heading: span.heading === true });
      return;
    }
  }
  const next = (level + 1) as Level;
  const pieces = next === Level.Sentence ? sentenceSpans(text, span) : wordSpans(text, span);
  let previousEnd = -1;
  for (const piece of pieces) {
    const gap = previousEnd < 0 ? joiner : normaliseGap(text.slice(previousEnd, piece.start));
    pushUnits(cut, piece, gap, next);
    previousEnd = piece.end;
  }
}

/** Cuts one giant word into the longest prefixes that fit, each found by `longestFit`. */
function pushCharacterUnits({ text, max, units }: Cutting, span: Span, joiner: string): void {
  let guess = max * 4;
  for (let start = span.start; start < span.end;) {
    const piece = longestFit(text, start, span.end, max, guess);
    units.push({
      text: text.slice(start, piece.end),
      tokens: piece.tokens,
      joiner: start === span.start ? joiner : '',
      heading: false,
    });
    // A giant word is usually one kind of text throughout: the next cut will be about as long.
    guess = piece.end - start;
    start = piece.end;
  }
}

/**
 * The longest prefix of text[start, end) with at most `max` tokens, or one within a token of
 * it. Counts are near-proportional to length, so each probe aims where the last one's
 * characters-per-token ratio says the limit is, falling back to bisection when that does not
 * narrow the range; a few counts of about a chunk's worth of text each. Never splits a
 * surrogate pair; a single code point (at most 4 tokens) always fits.
 */
function longestFit(
  text: string,
  start: number,
  end: number,
  max: number,
  guess: number,
): { end: number; tokens: number } {
  const count = (at: number) => countTextTokens(text.slice(start, at));
  let lo = codePointEnd(text, start);
  let loTokens = count(lo);
  let hi = Infinity; // the shortest prefix known not to fit
  let probe = start + guess;
  while (lo < end && hi - lo > 1 && loTokens < max - 1) {
    const at = safeCut(text, Math.min(end, hi - 1, Math.max(lo + 1, probe)));
    if (at <= lo) break;
    const tokens = count(at);
    const width = Math.min(hi, end + 1) - lo;
    if (tokens <= max) [lo, loTokens] = [at, tokens];
    else hi = at;
    probe = start + Math.floor(((at - start) * max) / Math.max(1, tokens));
    const outside = probe <= lo || probe >= hi;
    if (outside || Math.min(hi, end + 1) - lo > width / 2) {
      probe = hi === Infinity ? lo + (lo - start) : lo + Math.ceil((hi - lo) / 2);
    }
  }
  return { end: lo, tokens: loTokens };
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

/** The end of the code point that starts at `i`. */
function codePointEnd(text: string, i: number): number {
  return isHighSurrogate(text.charCodeAt(i)) && i + 1 < text.length ? i + 2 : i + 1;
}

/** `i`, moved back one if it falls inside a surrogate pair. */
function safeCut(text: string, i: number): number {
  const code = text.charCodeAt(i);
  const inside = isHighSurrogate(text.charCodeAt(i - 1)) && code >= 0xdc00 && code <= 0xdfff;
  return inside ? i - 1 : i;
}

/**
 * Greedy packing, with each chunk's size checked by a real count (joins can merge tokens). A
 * chunk does not end with a heading when more follows: the heading goes with its section.
 */
function pack(units: Unit[], { maxTokens: max, overlapTokens }: ChunkOptions): Chunk[] {
  const chunks: Chunk[] = [];
  let overlap = '';
  let i = 0;
  while (i < units.length) {
    const first = units[i]!;
    let content = overlap === '' ? first.text : overlap + first.joiner + first.text;
    let estimate = overlap === '' ? first.tokens : countTextTokens(content);
    if (estimate > max) [content, estimate] = [first.text, first.tokens];
    /** Where the content ends after each unit taken after the first. */
    const ends = [content.length];
    for (i += 1; i < units.length; i++) {
      const unit = units[i]!;
      const next = estimate + joinerTokens(unit.joiner) + unit.tokens;
      if (next > max) break;
      content += unit.joiner + unit.text;
      estimate = next;
      ends.push(content.length);
    }
    const drop = () => {
      ends.pop();
      i -= 1;
      content = content.slice(0, ends.at(-1));
    };
    let tokens = countTextTokens(content);
    while (tokens > max && ends.length > 1) {
      drop();
      tokens = countTextTokens(content);
    }
    let headings = 0;
    while (headings < ends.length && units[i - 1 - headings]!.heading) headings++;
    if (i < units.length && headings > 0 && headings < ends.length) {
      for (; headings > 0; headings--) drop();
      tokens = countTextTokens(content);
    }
    chunks.push({ seq: chunks.length, content, tokens });
    const following = units[i];
    if (following && overlapTokens > 0) {
      const budget = Math.min(overlapTokens, max - following.tokens - joinerTokens(following.joiner) - 1);
      overlap = overlapTail(content, budget);
    } else {
      overlap = '';
    }
  }
  return chunks;
}

function joinerTokens(joiner: string): number {
  return joiner.includes('\n') ? 1 : 0;
}

/**
 * The end of `content` to repeat at the start of the next chunk: whole sentences of at most
 * `budget` tokens, or whole words when sentences would give less than half of it. Never all of
 * `content`: a chunk that contains its predecessor entirely adds nothing to a search.
 */
function overlapTail(content: string, budget: number): string {
  if (budget <= 0) return '';
  const whole: Span = { start: 0, end: content.length };
  const sentences = sentenceSpans(content, whole);
  const bySentence = tailStart(content, sentences, budget);
  if (bySentence.tokens * 2 >= budget && bySentence.start > 0) return content.slice(bySentence.start);
  // Words can only reach back into the sentence that did not fit whole.
  const from = sentences[bySentence.index - 1]?.start ?? 0;
  const byWord = tailStart(content, wordSpans(content, { start: from, end: content.length }), budget);
  if (byWord.start > 0 && byWord.tokens > 0) return content.slice(byWord.start);
  return bySentence.start > 0 && bySentence.tokens > 0 ? content.slice(bySentence.start) : '';
}

/** Walks spans back from the end while their tail of `content` stays within `budget` tokens. */
function tailStart(
  content: string,
  spans: Span[],
  budget: number,
): { start: number; index: number; tokens: number } {
  let index = spans.length;
  let tokens = 0;
  while (index > 0) {
    const span = spans[index - 1]!;
    const gap = index < spans.length ? joinerTokens(content.slice(span.end, spans[index]!.start)) : 0;
    const next = tokens + gap + countTextTokens(content.slice(span.start, span.end));
    if (next > budget) break;
    [tokens, index] = [next, index - 1];
  }
  // The sum of parts can undercount the joined text by a token or two: check the real thing.
  while (index < spans.length) {
    tokens = countTextTokens(content.slice(spans[index]!.start));
    if (tokens <= budget) break;
    index += 1;
  }
  if (index >= spans.length) return { start: content.length, index, tokens: 0 };
  return { start: spans[index]!.start, index, tokens };
}

/** "\n\n" for a blank line, "\n" for a line break, " " for other whitespace, "" for none. */
function normaliseGap(gap: string): string {
  if (/\n[^\S\n]*\n/.test(gap)) return '\n\n';
  if (gap.includes('\n')) return '\n';
  return gap === '' ? '' : ' ';
}

const FENCE = /^ {0,3}(```|~~~)/;
const HEADING = /^ {0,3}#{1,6}(\s|$)/;

/**
 * Paragraphs: runs of lines between blank lines, with every markdown heading a paragraph of its
 * own (so a chunk can start at it) and every fenced code block one paragraph, blank lines and
 * `#` comment lines included.
 */
function paragraphSpans(text: string): Span[] {
  const spans: Span[] = [];
  let open: Span | undefined;
  let inFence = false;
  const close = () => {
    if (open) spans.push(open);
    open = undefined;
  };
  for (let lineStart = 0; lineStart <= text.length;) {
    const newline = text.indexOf('\n', lineStart);
    const lineEnd = newline < 0 ? text.length : newline;
    const line = text.slice(lineStart, lineEnd);
    const fence = FENCE.test(line);
    if (inFence) {
      open!.end = lineEnd;
      if (fence) close();
    } else if (fence) {
      close();
      open = { start: lineStart, end: lineEnd };
    } else if (line.trim() === '') {
      close();
    } else if (HEADING.test(line)) {
      close();
      spans.push({ start: lineStart, end: lineEnd, heading: true });
    } else if (open) {
      open.end = lineEnd;
    } else {
      open = { start: lineStart, end: lineEnd };
    }
    if (fence) inFence = !inFence;
    if (newline < 0) break;
    lineStart = newline + 1;
  }
  close();
  return spans.map((s) => ({ ...s, ...trim(text, s) }));
}

/**
 * Sentence boundaries: whitespace after . ! ? … (and closing quotes or brackets), any line break,
 * and right after CJK full stops, which take no space. Abbreviations ("e.g. this") cut too
 * often, which costs nothing: packing joins the pieces back.
 */
const SENTENCE_GAP = /(?<=[.!?…]['"”’)\]]*)\s+|\s*\n\s*|(?<=[。！？][”’」』）]*)(?![”’」』）])\s*/gu;
const WORD_GAP = /\s+/g;

function sentenceSpans(text: string, span: Span): Span[] {
  return splitSpans(text, span, SENTENCE_GAP);
}

function wordSpans(text: string, span: Span): Span[] {
  return splitSpans(text, span, WORD_GAP);
}

/** The non-empty pieces of `span` between matches of `gap` (a global regex). */
function splitSpans(text: string, span: Span, gap: RegExp): Span[] {
  const spans: Span[] = [];
  const region = text.slice(span.start, span.end);
  let start = 0;
  gap.lastIndex = 0;
  for (let m = gap.exec(region); m !== null; m = gap.exec(region)) {
    if (m[0] === '') gap.lastIndex += 1;
    if (m.index > start) spans.push({ start: span.start + start, end: span.start + m.index });
    start = m.index + m[0].length;
  }
  if (start < region.length) spans.push({ start: span.start + start, end: span.end });
  return spans;
}

function trim(text: string, span: Span): Span {
  let { start, end } = span;
  while (start < end && /\s/.test(text[start]!)) start++;
  while (end > start && /\s/.test(text[end - 1]!)) end--;
  return { start, end };
}
