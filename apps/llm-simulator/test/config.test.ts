import { ConfigError, parseConfig, simulatorEnvSchema } from '../src';

describe('simulator configuration', () => {
  it('has documented defaults for an empty environment', () => {
    expect(parseConfig({})).toEqual({
      host: '127.0.0.1',
      port: 8081,
      simulator: {
        name: 'sim',
        ttftMs: 150,
        tokenMs: 15,
        jitter: 0.2,
        defaultMaxTokens: 64,
        models: ['sim-small', 'sim-large'],
        fault: undefined,
        embeddingDim: 384,
      },
    });
  });

  it('reads every variable from its string form', () => {
    const config = parseConfig({
      SIM_NAME: ' backend-2 ',
      SIM_HOST: '0.0.0.0',
      SIM_PORT: '0',
      SIM_TTFT_MS: '0',
      SIM_TOKEN_MS: '3',
      SIM_JITTER: '0.5',
      SIM_DEFAULT_MAX_TOKENS: '32',
      SIM_MODELS: ' a , b/c ',
      SIM_FAULT: 'status=429;rate=0.1',
      SIM_EMBEDDING_DIM: '16',
      UNRELATED: 'ignored',
    });
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 0,
      simulator: {
        name: 'backend-2',
        ttftMs: 0,
        tokenMs: 3,
        jitter: 0.5,
        defaultMaxTokens: 32,
        models: ['a', 'b/c'],
        embeddingDim: 16,
      },
    });
    expect(config.simulator.fault).toMatchObject({ action: { kind: 'status', status: 429 }, rate: 0.1 });
  });

  it('treats blank values as unset', () => {
    const config = parseConfig({ SIM_PORT: '', SIM_FAULT: '  ', SIM_MODELS: '' });
    expect(config.port).toBe(8081);
    expect(config.simulator.fault).toBeUndefined();
    expect(config.simulator.models).toEqual(['sim-small', 'sim-large']);
  });

  it('reports every bad variable at once, by name, with what was given', () => {
    let error: unknown;
    try {
      parseConfig({
        SIM_PORT: 'eighty',
        SIM_JITTER: '1.5',
        SIM_FAULT: 'status=500;boom',
        SIM_MODELS: 'a,,b',
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const { problems } = error as ConfigError;
    expect(problems).toEqual([
      'SIM_PORT: must be an integer from 0 to 65535, got "eighty"',
      'SIM_JITTER: must be a number from 0 to 1, got "1.5"',
      expect.stringMatching(/^SIM_MODELS: .*empty items/),
      expect.stringMatching(/^SIM_FAULT: .*"boom"/),
    ]);
  });

  it('rejects out-of-range numbers and negative or fractional integers', () => {
    for (const env of [
      { SIM_PORT: '70000' },
      { SIM_TTFT_MS: '-1' },
      { SIM_TOKEN_MS: '1.5' },
      { SIM_EMBEDDING_DIM: '0' },
    ]) {
      expect(simulatorEnvSchema.safeParse(env).success).toBe(false);
    }
  });

  it('rejects a SIM_NAME that cannot be sent as a header', () => {
    expect(() => parseConfig({ SIM_NAME: 'caf\u00e9' })).toThrow(
      /SIM_NAME: must be up to 100 printable ASCII/,
    );
    expect(() => parseConfig({ SIM_NAME: 'x'.repeat(101) })).toThrow(/SIM_NAME/);
  });

  it('rejects a model listed twice', () => {
    expect(() => parseConfig({ SIM_MODELS: 'a,b,a' })).toThrow('SIM_MODELS: lists "a" twice');
  });
});
