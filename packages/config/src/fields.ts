import { z } from 'zod';

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);

/** A boolean variable: "true"/"1"/"yes"/"on" or "false"/"0"/"no"/"off"; anything else is an error. */
export function envBoolean(defaultValue: boolean) {
  return z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return defaultValue;
      const v = value.trim().toLowerCase();
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
      ctx.addIssue({ code: 'custom', message: 'expected true/false (or 1/0, yes/no, on/off)' });
      return z.NEVER;
    });
}

/** An integer variable within bounds. */
export function envInt(defaultValue: number, opts: { min?: number; max?: number } = {}) {
  const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = opts;
  return z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return defaultValue;
      if (!/^-?\d+$/.test(value.trim())) {
        ctx.addIssue({ code: 'custom', message: 'expected an integer' });
        return z.NEVER;
      }
      const n = Number(value);
      if (n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `expected an integer between ${min} and ${max}` });
        return z.NEVER;
      }
      return n;
    });
}

/** A duration in milliseconds: a plain number of ms, or a number with a unit (ms, s, m, h). */
export function envDuration(defaultMs: number) {
  return z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined) return defaultMs;
      const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(value.trim());
      if (!m) {
        ctx.addIssue({ code: 'custom', message: 'expected a duration such as 500, 500ms, 30s, 5m or 1h' });
        return z.NEVER;
      }
      const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h'];
      return Math.round(Number(m[1]) * factor);
    });
}

/** A comma-separated list; blanks are dropped. */
export function envList(defaultValue: string[]) {
  return z
    .string()
    .optional()
    .transform((value) =>
      value === undefined
        ? defaultValue
        : value
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
    );
}

/** A URL with one of the given protocols. */
export function envUrl(protocols: string[], defaultValue?: string) {
  const base = z.string().refine(
    (value) => {
      try {
        return protocols.includes(new URL(value).protocol.replace(/:$/, ''));
      } catch {
        return false;
      }
    },
    { message: `expected a URL (${protocols.map((p) => `${p}://`).join(', ')})` },
  );
  return defaultValue === undefined ? base : base.optional().default(defaultValue);
}
