import { z } from 'zod';
import { ConfigError, envBoolean, envDuration, envInt, envList, envUrl, parseEnv } from '@llmq/config';

const schema = z.object({
  FLAG: envBoolean(true),
  COUNT: envInt(5, { min: 1, max: 10 }),
  WAIT: envDuration(1000),
  NAMES: envList(['a']),
  REDIS_URL: envUrl(['redis', 'rediss'], 'redis://127.0.0.1:6379'),
});

describe('parseEnv', () => {
  it('applies defaults when variables are unset or empty', () => {
    expect(parseEnv(schema, { FLAG: '' })).toEqual({
      FLAG: true,
      COUNT: 5,
      WAIT: 1000,
      NAMES: ['a'],
      REDIS_URL: 'redis://127.0.0.1:6379',
    });
  });

  it('reads "false" as false, never as a truthy string', () => {
    expect(parseEnv(schema, { FLAG: 'false' }).FLAG).toBe(false);
    expect(parseEnv(schema, { FLAG: '0' }).FLAG).toBe(false);
    expect(parseEnv(schema, { FLAG: 'ON' }).FLAG).toBe(true);
  });

  it('parses durations with units and lists', () => {
    const env = parseEnv(schema, { WAIT: '30s', NAMES: 'x, y,,z' });
    expect(env.WAIT).toBe(30_000);
    expect(env.NAMES).toEqual(['x', 'y', 'z']);
    expect(parseEnv(schema, { WAIT: '2m' }).WAIT).toBe(120_000);
  });

  it('lists every bad variable in one error and never echoes URLs', () => {
    let error: unknown;
    try {
      parseEnv(schema, { FLAG: 'maybe', COUNT: '11', REDIS_URL: 'http://user:secret@x' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as ConfigError).message;
    expect(message).toContain('FLAG: expected true/false');
    expect(message).toContain('COUNT: expected an integer between 1 and 10 (got "11")');
    expect(message).toContain('REDIS_URL: expected a URL');
    expect(message).not.toContain('secret');
    const required = z.object({ PATH_TO_FILE: z.string() });
    expect(() => parseEnv(required, {})).toThrow('PATH_TO_FILE: required, but not set');
  });
});
