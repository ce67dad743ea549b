import { countTextTokens } from '@llmq/llm';
import { chunkText, type Chunk, type ChunkOptions } from '../src/chunker';

/** Deterministic prose: sentences of 6–20 words, paragraphs of 2–7 sentences. */
function prose(paragraphs: number, seed = 1): string {
  const vocabulary = (
    'the queue holds every job until a worker takes it and streams tokens back to the client ' +
    'while retries with jitter spread load across backends so that a slow provider never stalls ' +
    'retrieval augmented generation embeds documents splits them into chunks and searches vectors'
  ).split(' ');
  let state = seed;
  const next = (n: number) => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state % n;
  };
  const sentence = () => {
    const words = Array.from({ length: 6 + next(15) }, () => vocabulary[next(vocabulary.length)]!);
    const text = words.join(' ');
    return `${text[0]!.toUpperCase()}${text.slice(1)}.`;
  };
  return Array.from({ length: paragraphs }, () =>
    Array.from({ length: 2 + next(6) }, sentence).join(' '),
  ).join('\n\n');
}

const squash = (s: string) => s.replace(/\s+/g, '');

/** What every chunking must satisfy, whatever the input. */
function expectWellFormed(chunks: Chunk[], options: ChunkOptions): void {
  chunks.forEach((chunk, i) => {
    expect(chunk.seq).toBe(i);
    expect(chunk.content.trim()).toBe(chunk.content);
    expect(chunk.content).not.toBe('');
    expect(chunk.tokens).toBe(countTextTokens(chunk.content));
    expect(chunk.tokens).toBeLessThanOrEqual(options.maxTokens);
  });
}

/** The longest prefix of `b` that `a` ends with: the overlap the chunker repeated. */
function sharedText(a: string, b: string): string {
  for (let k = Math.min(a.length, b.length); k > 0; k--) {
    if (a.endsWith(b.slice(0, k))) return b.slice(0, k);
  }
  return '';
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe('chunkText options', () => {
  it.each([
    [{ maxTokens: 15, overlapTokens: 0 }, /maxTokens must be an integer of at least 16, got 15/],
    [{ maxTokens: 100.5, overlapTokens: 0 }, /maxTokens .* got 100.5/],
    [{ maxTokens: 100, overlapTokens: -1 }, /overlapTokens .* below half of maxTokens \(50\), got -1/],
    [{ maxTokens: 100, overlapTokens: 50 }, /overlapTokens .* got 50/],
    [{ maxTokens: 100, overlapTokens: 2.5 }, /overlapTokens .* got 2.5/],
  ])('rejects %j with a RangeError that says why', (options, message) => {
    expect(() => chunkText('some text', options)).toThrow(RangeError);
    expect(() => chunkText('some text', options)).toThrow(message);
  });

  it('accepts the smallest chunk size and an overlap just under half of it', () => {
    expect(chunkText('hello world', { maxTokens: 16, overlapTokens: 7 })).toHaveLength(1);
  });
});

describe('chunkText', () => {
  const small: ChunkOptions = { maxTokens: 64, overlapTokens: 0 };

  it('gives no chunks for empty or whitespace-only text', () => {
    expect(chunkText('', small)).toEqual([]);
    expect(chunkText(' \n\n\t  \r\n \u00a0 ', small)).toEqual([]);
  });

  it('keeps a short text whole, trimmed, with its token count', () => {
    const chunks = chunkText('\n\n  A short note about queues.  \n', small);
    expect(chunks).toEqual([{ seq: 0, content: 'A short note about queues.', tokens: 6 }]);
    expect(countTextTokens('A short note about queues.')).toBe(6);
  });

  it('covers the whole text, in order, with no chunk over the limit', () => {
    const text = prose(40);
    const chunks = chunkText(text, small);
    expect(chunks.length).toBeGreaterThan(10);
    expectWellFormed(chunks, small);
    expect(chunks.map((c) => squash(c.content)).join('')).toBe(squash(text));
  });

  it('packs whole paragraphs when they fit, cutting only between them', () => {
    const paragraphs = Array.from(
      { length: 12 },
      (_, i) => `Paragraph ${i} says a few words about item ${i}.`,
    );
    const chunks = chunkText(paragraphs.join('\n\n'), small);
    expectWellFormed(chunks, small);
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) {
      expect(chunk.content).toMatch(/^Paragraph \d+ .*\.$/s);
      // Paragraphs are packed together, each kept whole, still separated by a blank line.
      for (const part of chunk.content.split('\n\n')) expect(paragraphs).toContain(part);
    }
    expect(chunks.map((c) => c.content).join('\n\n')).toBe(paragraphs.join('\n\n'));
  });

  it('starts a new piece at a markdown heading even without a blank line before it', () => {
    const section = (n: number) =>
      `## Section ${n}\nThe section ${n} body explains how retries spread load across backends.`;
    const text = Array.from({ length: 6 }, (_, i) => section(i)).join('\n');
    const options = { maxTokens: 24, overlapTokens: 0 };
    const chunks = chunkText(text, options);
    expectWellFormed(chunks, options);
    expect(chunks.map((c) => c.content)).toEqual(Array.from({ length: 6 }, (_, i) => section(i)));
  });

  it('packs a run of headings together rather than one chunk each', () => {
    const text = Array.from({ length: 200 }, (_, i) => `# Heading ${i}`).join('\n');
    const chunks = chunkText(text, small);
    expectWellFormed(chunks, small);
    expect(chunks.length).toBeLessThan(20);
    expect(chunks.map((c) => c.content).join('\n')).toBe(text);
  });

  it('reads Windows line endings like any others', () => {
    const unix = prose(8, 4);
    const windows = chunkText(unix.replace(/\n/g, '\r\n'), small).map((c) => c.content.replace(/\r/g, ''));
    expect(windows).toEqual(chunkText(unix, small).map((c) => c.content));
  });

  it('keeps a fenced code block whole, its # lines and blank lines included', () => {
    const intro =
      'Before the first run, install the dependencies with the lockfile exactly as it is, so that every ' +
      'machine in the fleet resolves the same versions; then run the tests once to check the setup:';
    const code = '```sh\nset -eu\n\n# install the dependencies\nnpm ci\n```';
    const options = { maxTokens: 48, overlapTokens: 0 };
    expect(countTextTokens(intro)).toBe(39);
    expect(countTextTokens(`${intro}\n${code}`)).toBeGreaterThan(48);
    // The fence's first lines would fit after the intro: cutting there would break the code.
    const chunks = chunkText(`${intro}\n${code}`, options);
    expect(chunks.map((c) => c.content)).toEqual([intro, code]);
  });

  it('cuts a paragraph that does not fit at sentence ends', () => {
    const text = prose(6, 7).replace(/\n\n/g, ' ');
    const options = { maxTokens: 48, overlapTokens: 0 };
    const chunks = chunkText(text, options);
    expectWellFormed(chunks, options);
    expect(chunks.length).toBeGreaterThan(2);
    for (const chunk of chunks) expect(chunk.content).toMatch(/^[A-Z].*\.$/s);
  });

  it('cuts a sentence that does not fit at spaces, keeping words whole', () => {
    const words = Array.from({ length: 200 }, (_, i) => `word${i}`);
    const options = { maxTokens: 20, overlapTokens: 0 };
    const chunks = chunkText(words.join(' '), options);
    expectWellFormed(chunks, options);
    expect(chunks.flatMap((c) => c.content.split(' '))).toEqual(words);
  });

  it('cuts a single giant word by characters', () => {
    const word = 'abcdefghij'.repeat(3_000);
    const text = `Before. ${word} After.`;
    const options = { maxTokens: 32, overlapTokens: 0 };
    const chunks = chunkText(text, options);
    expectWellFormed(chunks, options);
    expect(chunks.length).toBeGreaterThan(10);
    // Compared as booleans: a failure must not print 30 kB of letters.
    expect(chunks.map((c) => squash(c.content)).join('') === squash(text)).toBe(true);
    // Most pieces fill the chunk: the bisection finds the longest prefix, not just any that fits.
    const full = chunks.filter((c) => c.tokens >= options.maxTokens - 2).length;
    expect(full).toBeGreaterThan(chunks.length / 2);
  });

  it('never splits a surrogate pair', () => {
    const emoji = '😀🚀👍🏽'.repeat(2_000);
    const options = { maxTokens: 16, overlapTokens: 0 };
    const chunks = chunkText(emoji, options);
    expectWellFormed(chunks, options);
    for (const chunk of chunks) expect(chunk.content).not.toMatch(LONE_SURROGATE);
    expect(chunks.map((c) => c.content).join('')).toBe(emoji);
  });

  it('handles pathological runs (long whitespace, one repeated letter) within the limit', () => {
    const text = `Start.${' '.repeat(50_000)}middle ${'x'.repeat(100_000)}\n${'\n'.repeat(10_000)}end`;
    const options = { maxTokens: 100, overlapTokens: 10 };
    const chunks = chunkText(text, options);
    expectWellFormed(chunks, options);
    expect(chunks[0]!.content.startsWith('Start.')).toBe(true);
    expect(chunks.at(-1)!.content.endsWith('end')).toBe(true);
  });

  it('cuts CJK text, which has no spaces, at its full stops', () => {
    const sentence = '检索增强生成把文档切成小块并用向量搜索。';
    const text = sentence.repeat(60);
    const options = { maxTokens: 40, overlapTokens: 0 };
    const chunks = chunkText(text, options);
    expectWellFormed(chunks, options);
    for (const chunk of chunks)
      expect(chunk.content).toMatch(/^(检索增强生成把文档切成小块并用向量搜索。)+$/);
    expect(chunks.map((c) => c.content).join('')).toBe(text);
  });

  it('is deterministic', () => {
    const text = prose(30, 3);
    const options = { maxTokens: 80, overlapTokens: 20 };
    expect(chunkText(text, options)).toEqual(chunkText(text, options));
  });

  it('handles a megabyte of prose', () => {
    const text = prose(3_000, 5);
    expect(text.length).toBeGreaterThan(1_000_000);
    const options = { maxTokens: 512, overlapTokens: 64 };
    const chunks = chunkText(text, options);
    expectWellFormed(chunks, options);
    expect(chunks.length).toBeGreaterThan(400);
  });
});

describe('chunkText overlap', () => {
  const options: ChunkOptions = { maxTokens: 200, overlapTokens: 40 };
  const text = prose(60, 11);
  const chunks = chunkText(text, options);

  it('repeats about overlapTokens of whole sentences from the end of the previous chunk', () => {
    expectWellFormed(chunks, options);
    expect(chunks.length).toBeGreaterThan(10);
    let roomy = 0;
    let wordFallbacks = 0;
    for (let i = 1; i < chunks.length; i++) {
      const previous = chunks[i - 1]!.content;
      const shared = sharedText(previous, chunks[i]!.content);
      const sharedTokens = countTextTokens(shared);
      expect(shared).not.toBe(previous);
      expect(sharedTokens).toBeLessThanOrEqual(options.overlapTokens);
      // Less (or none) only where the next piece left no room for the whole overlap.
      const room = options.maxTokens - (chunks[i]!.tokens - sharedTokens);
      if (room > options.overlapTokens + 2) {
        roomy += 1;
        expect(sharedTokens).toBeGreaterThanOrEqual(options.overlapTokens / 2);
      }
      if (shared === '') continue;
      // Whole sentences where they come close to the overlap, else whole words: never a cut word.
      const before = previous.slice(0, previous.length - shared.length);
      expect(before).toMatch(/\s$/);
      if (/^[A-Z]/.test(shared)) expect(before).toMatch(/\.\s+$/);
      else wordFallbacks += 1;
    }
    expect(roomy).toBeGreaterThan((chunks.length - 1) / 3);
    expect(wordFallbacks).toBeLessThan((chunks.length - 1) / 2);
  });

  it('still covers the text once the repeated parts are taken out', () => {
    const rebuilt = chunks
      .map((c, i) =>
        i === 0 ? c.content : c.content.slice(sharedText(chunks[i - 1]!.content, c.content).length),
      )
      .map(squash)
      .join('');
    expect(rebuilt).toBe(squash(text));
  });

  it('falls back to whole words when the last sentence is longer than the overlap', () => {
    const words = Array.from({ length: 300 }, (_, i) => `w${i}`).join(' ');
    const wordOptions = { maxTokens: 40, overlapTokens: 10 };
    const wordChunks = chunkText(words, wordOptions);
    expectWellFormed(wordChunks, wordOptions);
    for (let i = 1; i < wordChunks.length; i++) {
      const previous = wordChunks[i - 1]!.content;
      const shared = sharedText(previous, wordChunks[i]!.content);
      expect(countTextTokens(shared)).toBeLessThanOrEqual(10);
      expect(countTextTokens(shared)).toBeGreaterThanOrEqual(5);
      // Whole words: the previous chunk has a space right before the repeated part.
      expect(previous.at(-shared.length - 1)).toBe(' ');
    }
  });

  it('shrinks the overlap, down to none, rather than exceed the limit before a big piece', () => {
    const small = { maxTokens: 100, overlapTokens: 30 };
    const opening = 'A short opening sentence here. Another short one follows it.';
    const paragraph = (tokens: number) => {
      let text = 'Items';
      for (let i = 0; countTextTokens(`${text} item${i}.`) <= tokens; i++) text += ` item${i}`;
      return `${text}.`;
    };
    const full = paragraph(99);
    expect(chunkText(`${opening}\n\n${full}`, small).map((c) => c.content)).toEqual([opening, full]);

    const large = paragraph(92);
    const result = chunkText(`${opening}\n\n${large}`, small);
    expectWellFormed(result, small);
    expect(result).toHaveLength(2);
    const shared = sharedText(opening, result[1]!.content);
    expect(shared).not.toBe('');
    expect(result[1]!.content).toBe(`${shared}\n\n${large}`);
  });
});
