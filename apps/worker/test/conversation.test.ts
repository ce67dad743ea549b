import type { ConversationTurn } from '@llmq/db';
import { countPromptTokens } from '@llmq/llm';
import { fitConversation } from '../src/conversation';

const turn = (
  seq: number,
  messages: ConversationTurn['messages'],
  reply: string | null,
): ConversationTurn => ({
  seq,
  jobId: `00000000-0000-4000-8000-00000000000${seq}`,
  status: reply === null ? 'failed' : 'completed',
  messages,
  reply,
  createdAt: new Date(0),
});

const system = { role: 'system' as const, content: 'Be brief.' };
const user = (content: string) => ({ role: 'user' as const, content });

describe('fitConversation', () => {
  it('puts every answered exchange before the current messages when they fit', () => {
    const turns = [turn(1, [system, user('a')], 'A'), turn(2, [user('b')], 'B')];
    const fitted = fitConversation(turns, [user('c')], 10_000);
    expect(fitted).toEqual({
      messages: [
        system,
        user('a'),
        { role: 'assistant', content: 'A' },
        user('b'),
        { role: 'assistant', content: 'B' },
        user('c'),
      ],
      droppedTurns: 0,
    });
  });

  it('leaves out failed turns: their question was never answered', () => {
    const turns = [turn(1, [user('a')], 'A'), turn(2, [user('lost')], null)];
    expect(fitConversation(turns, [user('c')], 10_000)?.messages).toEqual([
      user('a'),
      { role: 'assistant', content: 'A' },
      user('c'),
    ]);
  });

  it('drops the oldest exchanges first and keeps the instructions of the first turn', () => {
    const long = 'word '.repeat(50);
    const turns = [turn(1, [system, user(long)], long), turn(2, [user('short')], 'ok')];
    const budget = countPromptTokens([
      system,
      user('short'),
      { role: 'assistant', content: 'ok' },
      user('c'),
    ]);
    const fitted = fitConversation(turns, [user('c')], budget);
    expect(fitted).toEqual({
      messages: [system, user('short'), { role: 'assistant', content: 'ok' }, user('c')],
      droppedTurns: 1,
    });
  });

  it("keeps the current turn's own instructions instead of the first turn's", () => {
    const own = { role: 'system' as const, content: 'Now be verbose.' };
    const turns = [turn(1, [system, user('a')], 'A')];
    expect(fitConversation(turns, [own, user('c')], 10_000)?.messages).toEqual([
      own,
      user('a'),
      { role: 'assistant', content: 'A' },
      user('c'),
    ]);
  });

  it('leaves out the instructions every earlier turn repeated (as the Responses API does)', () => {
    const turns = [turn(1, [system, user('a')], 'A'), turn(2, [system, user('b')], 'B')];
    expect(fitConversation(turns, [system, user('c')], 10_000)?.messages).toEqual([
      system,
      user('a'),
      { role: 'assistant', content: 'A' },
      user('b'),
      { role: 'assistant', content: 'B' },
      user('c'),
    ]);
  });

  it('is null when the current turn alone does not fit', () => {
    expect(fitConversation([], [user('word '.repeat(100))], 20)).toBeNull();
  });
});
