import { generateRequestSchema, toGenerationSpec } from '@llmq/contracts';

describe('generateRequestSchema', () => {
  it('accepts a prompt and normalises it to one user message with the default model', () => {
    const body = generateRequestSchema.parse({ prompt: 'hi', temperature: 0, max_tokens: 5 });
    expect(toGenerationSpec(body, 'sim-small')).toEqual({
      model: 'sim-small',
      messages: [{ role: 'user', content: 'hi' }],
      params: { temperature: 0, max_tokens: 5 },
    });
  });

  it('requires exactly one of messages and prompt', () => {
    const neither = generateRequestSchema.safeParse({ model: 'x' });
    expect(neither.success).toBe(false);
    expect(neither.error?.issues[0]?.path).toEqual(['messages']);
    const both = generateRequestSchema.safeParse({ prompt: 'a', messages: [{ role: 'user', content: 'b' }] });
    expect(both.error?.issues[0]?.path).toEqual(['prompt']);
  });

  it('rejects unknown fields and out-of-range sampling with the field named', () => {
    const typo = generateRequestSchema.safeParse({ prompt: 'a', max_token: 5 });
    expect(typo.success).toBe(false);
    expect(JSON.stringify(typo.error?.issues)).toContain('max_token');
    const hot = generateRequestSchema.safeParse({ prompt: 'a', temperature: 3 });
    expect(hot.error?.issues[0]?.path).toEqual(['temperature']);
    const role = generateRequestSchema.safeParse({ messages: [{ role: 'robot', content: 'x' }] });
    expect(role.error?.issues[0]?.path).toEqual(['messages', 0, 'role']);
  });

  it('bounds metadata', () => {
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    expect(generateRequestSchema.safeParse({ prompt: 'a', metadata: many }).success).toBe(false);
    expect(generateRequestSchema.safeParse({ prompt: 'a', metadata: { k: 'v' } }).success).toBe(true);
  });
});
