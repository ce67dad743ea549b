import type { z } from 'zod';

/** Raised when the environment does not satisfy an app's schema; the message lists every bad variable. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Parses an environment (usually `process.env`, passed in by main.ts) against a schema.
 * Empty strings count as unset, so `FOO=` falls back to the default instead of failing.
 */
export function parseEnv<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined>,
): z.output<S> {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== '') cleaned[key] = value;
  }
  const parsed = schema.safeParse(cleaned);
  if (parsed.success) return parsed.data;
  throw new ConfigError(
    parsed.error.issues.map((issue) => {
      const name = issue.path.join('.') || '(environment)';
      const value = typeof issue.path[0] === 'string' ? cleaned[issue.path[0]] : undefined;
      // Values are not echoed for anything that looks like a secret or a URL with credentials.
      const shown =
        value === undefined || /KEY|SECRET|TOKEN|PASSWORD|URL/i.test(name) ? '' : ` (got "${value}")`;
      const message =
        value === undefined && issue.code === 'invalid_type' ? 'required, but not set' : issue.message;
      return `${name}: ${message}${shown}`;
    }),
  );
}
