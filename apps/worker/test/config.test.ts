import { parseEnv } from '@llmq/config';
import { workerEnvSchema } from '../src/config';

const base = {
  REDIS_URL: 'redis://127.0.0.1:6379',
  DATABASE_URL: 'postgres://127.0.0.1/db',
  PROVIDERS_FILE: 'providers.yaml',
};

describe('worker configuration', () => {
  it('has sane defaults', () => {
    expect(parseEnv(workerEnvSchema, base)).toMatchObject({
      WORKER_CONCURRENCY: 16,
      LOCK_DURATION_MS: 30_000,
      DRAIN_TIMEOUT_MS: 30_000,
      LLM_ATTEMPTS_PER_MODEL: 3,
      JOB_MAX_WAIT_MS: 900_000,
    });
  });

  it('reads durations with units and rejects nonsense', () => {
    expect(parseEnv(workerEnvSchema, { ...base, DRAIN_TIMEOUT_MS: '2m' }).DRAIN_TIMEOUT_MS).toBe(120_000);
    expect(() => parseEnv(workerEnvSchema, { ...base, WORKER_CONCURRENCY: '0' })).toThrow(
      /WORKER_CONCURRENCY/,
    );
    expect(() => parseEnv(workerEnvSchema, { ...base, BREAKER_ERROR_RATIO: '2' })).toThrow(
      /BREAKER_ERROR_RATIO/,
    );
    expect(() =>
      parseEnv(workerEnvSchema, { REDIS_URL: base.REDIS_URL, DATABASE_URL: base.DATABASE_URL }),
    ).toThrow(/PROVIDERS_FILE/);
  });
});
