import type { z } from 'zod';
import { ApiError, type ErrorDialect } from './errors';

/**
 * Parses a request body against a schema; the first problem becomes a 400 in the words of the
 * API that was called: OpenAI's (`Missing required parameter: 'messages[0].role'.`) or
 * Anthropic's (`messages.0.role: Field required`).
 */
export function parseBody<T extends z.ZodType>(
  schema: T,
  body: unknown,
  dialect: ErrorDialect = 'openai',
): z.output<T> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const first = result.error.issues[0];
  if (!first || first.path.length === 0) {
    throw ApiError.invalidRequest('The request body must be a JSON object.');
  }
  const missing = (code: string, path: readonly PropertyKey[]) =>
    (code === 'invalid_type' || code === 'invalid_union') && valueAt(body, path) === undefined;
  if (dialect === 'anthropic') {
    const { path, message, code } = innermost(first);
    const param = path.map(String).join('.');
    throw ApiError.invalidRequest(`${param}: ${missing(code, path) ? 'Field required' : message}`, param);
  }
  const issue = first;
  const param = formatPath(issue.path);
  if (missing(issue.code, issue.path)) {
    throw ApiError.invalidRequest(
      `Missing required parameter: '${param}'.`,
      param,
      'missing_required_parameter',
    );
  }
  throw ApiError.invalidRequest(`Invalid value for '${param}': ${issue.message}`, param, 'invalid_value');
}

/**
 * A union's own issue only says "Invalid input"; the branch that got furthest into the value
 * (a content block without its text) says what is actually wrong.
 */
function innermost(issue: z.core.$ZodIssue): { path: PropertyKey[]; message: string; code: string } {
  if (issue.code === 'invalid_union') {
    const deepest = issue.errors
      .flat()
      .reduce<z.core.$ZodIssue | undefined>(
        (best, candidate) => (candidate.path.length > (best?.path.length ?? 0) ? candidate : best),
        undefined,
      );
    if (deepest) {
      const inner = innermost(deepest);
      return { ...inner, path: [...issue.path, ...inner.path] };
    }
  }
  return { path: issue.path, message: issue.message, code: issue.code };
}

/** `messages[0].content`, the way OpenAI names parameters in its errors. */
function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((key, i) => (typeof key === 'number' ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`))
    .join('');
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}
