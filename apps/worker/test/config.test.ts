import { parseEnv } from '@llmq/config';
import { workerEnvSchema } from '../src/config';

const base = { REDIS_URL: 'redis://127.0.0.1:6379', DATABASE_URL: 'postgres://127.0.0.1/db' };

describe('worker configuration', () => {
  it('has sane defaults', () => {
    expect(parseEnv(workerEnvSchema, base)).toMatchObject({
      WORKER_CONCURRENCY: 16,
      LOCK_DURATION_MS: 30_000,
      DRAIN_TIMEOUT_MS: 30_000,
      PROVIDER_BASE_URL: 'http://127.0.0.1:8081/v1',
    });
  });

  it('reads durations with units and rejects nonsense', () => {
    expect(parseEnv(workerEnvSchema, { ...base, DRAIN_TIMEOUT_MS: '2m' }).DRAIN_TIMEOUT_MS).toBe(120_000);
    expect(() => parseEnv(workerEnvSchema, { ...base, WORKER_CONCURRENCY: '0' })).toThrow(
      /WORKER_CONCURRENCY/,
    );
    expect(() => parseEnv(workerEnvSchema, { ...base, PROVIDER_API_KEY_ENV: 'sk-live-123' })).toThrow(
      /PROVIDER_API_KEY_ENV/,
    );
  });
});
