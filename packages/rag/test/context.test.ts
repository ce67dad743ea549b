import type { ChatMessage } from '@llmq/contracts';
import { countPromptTokens, countTextTokens } from '@llmq/llm';
import { RAG_INSTRUCTION, buildRagPrompt, type Source } from '../src/context';

const source = (n: number, content: string, title: string | null = `Doc ${n}`): Source => ({
  chunkId: `chunk-${n}`,
  documentId: `doc-${n}`,
  title,
  seq: 0,
  content,
  score: 1 - n / 100,
  tokens: countTextTokens(content),
});

const words = (n: number, word = 'fact') => Array.from({ length: n }, (_, i) => `${word}${i}`).join(' ');
const question: ChatMessage[] = [{ role: 'user', content: 'How do retries work?' }];

/** The context part of a prompt built from `question` (a system message of its own). */
const contextOf = (messages: ChatMessage[]) => {
  expect(messages[0]!.role).toBe('system');
  return messages[0]!.content;
};
const costOf = (context: string) => countPromptTokens([{ role: 'system', content: context }]);
/** The `[n] Title` lines, in order. */
const citations = (context: string) => context.match(/^\[\d+\] .*$/gm) ?? [];

describe('buildRagPrompt', () => {
  it('puts the sources, numbered best first, in a system message before the conversation', () => {
    const sources = [source(1, 'Retries use full jitter.'), source(2, 'A 429 waits for Retry-After.')];
    const prompt = buildRagPrompt(question, sources, 1_000);
    expect(prompt.used).toEqual(sources);
    expect(prompt.messages).toHaveLength(2);
    expect(prompt.messages[1]).toEqual(question[0]);
    expect(contextOf(prompt.messages)).toBe(
      `${RAG_INSTRUCTION}\n\nSources:\n\n[1] Doc 1\nRetries use full jitter.\n\n[2] Doc 2\nA 429 waits for Retry-After.`,
    );
    expect(prompt.contextTokens).toBe(costOf(contextOf(prompt.messages)));
  });

  it('keeps the context within the budget, counting the formatted blocks, not just the content', () => {
    const sources = Array.from({ length: 12 }, (_, i) => source(i, words(20 + 7 * i)));
    let contentOnlyWouldOverflow = 0;
    for (let budget = 60; budget <= 1_500; budget += 7) {
      const prompt = buildRagPrompt(question, sources, budget);
      if (prompt.used.length === 0) {
        expect(prompt.messages).toBe(question);
        continue;
      }
      const context = contextOf(prompt.messages);
      expect(costOf(context)).toBeLessThanOrEqual(budget);
      expect(prompt.contextTokens).toBe(costOf(context));
      const header = costOf(`${RAG_INSTRUCTION}\n\nSources:`);
      const contentOnly = header + prompt.used.reduce((sum, s) => sum + s.tokens, 0);
      if (sources.some((s) => !prompt.used.includes(s) && contentOnly + s.tokens <= budget)) {
        contentOnlyWouldOverflow += 1;
      }
    }
    // Counting contents alone would have taken one more source at some budgets: the blocks did not.
    expect(contentOnlyWouldOverflow).toBeGreaterThan(0);
  });

  it('takes a source exactly at the budget and skips it one token below', () => {
    const sources = [source(1, words(30)), source(2, words(40))];
    const full = buildRagPrompt(question, sources, 10_000);
    expect(full.used).toHaveLength(2);
    expect(buildRagPrompt(question, sources, full.contextTokens).used).toHaveLength(2);
    const tight = buildRagPrompt(question, sources, full.contextTokens - 1);
    expect(tight.used.map((s) => s.chunkId)).toEqual(['chunk-1']);
  });

  it('skips a source that does not fit and still takes smaller ones after it, renumbered', () => {
    const sources = [source(1, words(20)), source(2, words(400)), source(3, words(25)), source(4, words(30))];
    const prompt = buildRagPrompt(question, sources, 250);
    expect(prompt.used.map((s) => s.chunkId)).toEqual(['chunk-1', 'chunk-3', 'chunk-4']);
    expect(citations(contextOf(prompt.messages))).toEqual(['[1] Doc 1', '[2] Doc 3', '[3] Doc 4']);
  });

  it('merges after an existing leading system message instead of replacing it', () => {
    const conversation: ChatMessage[] = [
      { role: 'system', content: 'You are terse.', name: 'ops' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello.' },
      { role: 'user', content: 'How do retries work?' },
    ];
    const copy = structuredClone(conversation);
    const prompt = buildRagPrompt(conversation, [source(1, 'Retries use full jitter.')], 500);
    expect(prompt.messages).toHaveLength(4);
    expect(prompt.messages[0]).toEqual({
      role: 'system',
      name: 'ops',
      content: `You are terse.\n\n${RAG_INSTRUCTION}\n\nSources:\n\n[1] Doc 1\nRetries use full jitter.`,
    });
    expect(prompt.messages.slice(1)).toEqual(conversation.slice(1));
    expect(conversation).toEqual(copy);
  });

  it('merges into a leading developer message too, and prepends when the system message is not first', () => {
    const developer = buildRagPrompt(
      [{ role: 'developer', content: 'Be brief.' }, ...question],
      [source(1, 'x')],
      500,
    );
    expect(developer.messages.map((m) => m.role)).toEqual(['developer', 'user']);
    expect(developer.messages[0]!.content).toMatch(/^Be brief\.\n\nAnswer using/);

    const late = buildRagPrompt([...question, { role: 'system', content: 'Late.' }], [source(1, 'x')], 500);
    expect(late.messages.map((m) => m.role)).toEqual(['system', 'user', 'system']);
    expect(late.messages[2]!.content).toBe('Late.');
  });

  it('returns the messages unchanged when no source fits or there are none', () => {
    const conversation: ChatMessage[] = [{ role: 'system', content: 'Sys.' }, ...question];
    for (const [sources, budget] of [
      [[], 1_000],
      [[source(1, words(500))], 200],
      [[source(1, 'tiny')], 10],
      [[source(1, '   \n ')], 1_000],
    ] as const) {
      const prompt = buildRagPrompt(conversation, [...sources], budget);
      expect(prompt).toEqual({ messages: conversation, used: [], contextTokens: 0 });
      expect(prompt.messages).toBe(conversation);
    }
  });

  it('names untitled sources, flattens titles to one line, and skips a repeated chunk', () => {
    const sources = [
      source(1, 'one', null),
      source(2, 'two', '  Multi\nline   title '),
      source(1, 'one', null),
    ];
    const prompt = buildRagPrompt(question, sources, 500);
    expect(prompt.used).toHaveLength(2);
    expect(citations(contextOf(prompt.messages))).toEqual(['[1] Untitled', '[2] Multi line title']);
  });

  it('is deterministic', () => {
    const sources = Array.from({ length: 8 }, (_, i) => source(i, words(10 + 13 * i)));
    const a = buildRagPrompt(question, sources, 400);
    const b = buildRagPrompt(structuredClone(question), structuredClone(sources), 400);
    expect(JSON.stringify(b)).toBe(JSON.stringify(a));
  });
});
