import { ConfigError, parseEnv } from '@llmq/config';
import { apiEnvSchema, settingsFrom } from '../src/config';

const base = {
  REDIS_URL: 'redis://127.0.0.1:6379',
  DATABASE_URL: 'postgres://u:p@127.0.0.1/db',
  PROVIDERS_FILE: '/etc/llmq/providers.yaml',
};
const catalog = (names: string[]) => ({
  resolve: (n: string) => (names.includes(n) ? n : null),
  names: () => names,
  requestNames: () => names,
  semanticThreshold: () => null,
  price: () => null,
});

describe('API configuration', () => {
  it('has sane defaults', () => {
    const env = parseEnv(apiEnvSchema, base);
    expect(env).toMatchObject({
      PORT: 3000,
      HOST: '127.0.0.1',
      LLMQ_PREFIX: 'llmq',
      BODY_LIMIT_BYTES: 1_048_576,
    });
    expect(settingsFrom(env, catalog(['sim-small']))).toMatchObject({
      defaultModel: 'sim-small',
      trustProxy: false,
      sseHeartbeatMs: 15_000,
    });
  });

  it('requires the data stores and names what is wrong', () => {
    expect(() => parseEnv(apiEnvSchema, {})).toThrow(ConfigError);
    expect(() => parseEnv(apiEnvSchema, { ...base, PROVIDERS_FILE: '' })).toThrow(/PROVIDERS_FILE/);
    expect(() => parseEnv(apiEnvSchema, { ...base, DATABASE_URL: 'mysql://x' })).toThrow(
      /DATABASE_URL: expected a URL/,
    );
    expect(() => parseEnv(apiEnvSchema, { ...base, TRUST_PROXY: 'sometimes' })).toThrow(/TRUST_PROXY/);
  });

  it('refuses a default model that is not served', () => {
    const env = parseEnv(apiEnvSchema, { ...base, DEFAULT_MODEL: 'gpt-x' });
    expect(() => settingsFrom(env, catalog(['a', 'b']))).toThrow(
      'DEFAULT_MODEL "gpt-x" is not in the providers file (models: a, b)',
    );
  });
});
