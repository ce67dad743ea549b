import { z } from 'zod';
import { FaultSpecError, parseFaultSpec } from './faults';
import type { SimulatorOptions } from './simulator';

/** An unset or blank variable takes the default: `SIM_FAULT=` in a compose file means none. */
function isBlank(raw: string | undefined): raw is undefined {
  return raw === undefined || raw.trim() === '';
}

function integer(fallback: number, min: number, max: number) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (isBlank(raw)) return fallback;
      const value = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
      if (value >= min && value <= max) return value;
      ctx.addIssue({ code: 'custom', message: `must be an integer from ${min} to ${max}, got "${raw}"` });
      return z.NEVER;
    });
}

function fraction(fallback: number) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (isBlank(raw)) return fallback;
      const value = /^(\d+(\.\d*)?|\.\d+)$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
      if (value >= 0 && value <= 1) return value;
      ctx.addIssue({ code: 'custom', message: `must be a number from 0 to 1, got "${raw}"` });
      return z.NEVER;
    });
}

function text(fallback: string) {
  return z
    .string()
    .optional()
    .transform((raw) => (isBlank(raw) ? fallback : raw.trim()));
}

/** Sent as a header value, so printable ASCII only (Node refuses anything else in a header). */
function headerText(fallback: string) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (isBlank(raw)) return fallback;
      if (/^[\x20-\x7e]{1,100}$/.test(raw.trim())) return raw.trim();
      ctx.addIssue({
        code: 'custom',
        message: `must be up to 100 printable ASCII characters (it is sent as a header), got "${raw}"`,
      });
      return z.NEVER;
    });
}

function list(fallback: readonly string[]) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (isBlank(raw)) return [...fallback];
      const items = raw.split(',').map((item) => item.trim());
      if (items.some((item) => item === '')) {
        ctx.addIssue({
          code: 'custom',
          message: `must be a comma-separated list without empty items, got "${raw}"`,
        });
        return z.NEVER;
      }
      const duplicate = items.find((item, i) => items.indexOf(item) !== i);
      if (duplicate !== undefined) {
        ctx.addIssue({ code: 'custom', message: `lists "${duplicate}" twice` });
        return z.NEVER;
      }
      return items;
    });
}

function fault() {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (isBlank(raw)) return undefined;
      try {
        return parseFaultSpec(raw);
      } catch (error) {
        if (!(error instanceof FaultSpecError)) throw error;
        ctx.addIssue({ code: 'custom', message: error.message });
        return z.NEVER;
      }
    });
}

/** The simulator's environment. Parsed by main.ts only; exported so that tests can parse too. */
export const simulatorEnvSchema = z
  .object({
    /** Tells instances apart when tests run several as separate backends. */
    SIM_NAME: headerText('sim'),
    SIM_HOST: text('127.0.0.1'),
    /** 0 picks any free port; main.ts prints the real one. */
    SIM_PORT: integer(8081, 0, 65_535),
    SIM_TTFT_MS: integer(150, 0, 600_000),
    SIM_TOKEN_MS: integer(15, 0, 600_000),
    SIM_JITTER: fraction(0.2),
    SIM_DEFAULT_MAX_TOKENS: integer(64, 1, 65_536),
    SIM_MODELS: list(['sim-small', 'sim-large']),
    SIM_FAULT: fault(),
    SIM_EMBEDDING_DIM: integer(384, 1, 8_192),
  })
  .transform((env) => ({
    host: env.SIM_HOST,
    port: env.SIM_PORT,
    simulator: {
      name: env.SIM_NAME,
      ttftMs: env.SIM_TTFT_MS,
      tokenMs: env.SIM_TOKEN_MS,
      jitter: env.SIM_JITTER,
      defaultMaxTokens: env.SIM_DEFAULT_MAX_TOKENS,
      models: env.SIM_MODELS,
      fault: env.SIM_FAULT,
      embeddingDim: env.SIM_EMBEDDING_DIM,
    } satisfies SimulatorOptions,
  }));

export type SimulatorConfig = z.output<typeof simulatorEnvSchema>;

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid llm-simulator configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Parses the environment, reporting every bad variable at once as `NAME: problem`. */
export function parseConfig(env: Readonly<Record<string, string | undefined>>): SimulatorConfig {
  const result = simulatorEnvSchema.safeParse(env);
  if (result.success) return result.data;
  throw new ConfigError(result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
}
