import type { z } from 'zod';
import { ApiError } from './errors';

/** Parses a request body against a schema; the first problem becomes a 400 in OpenAI's words. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (!issue || issue.path.length === 0) {
    throw ApiError.invalidRequest('The request body must be a JSON object.');
  }
  const param = formatPath(issue.path);
  if (issue.code === 'invalid_type' && valueAt(body, issue.path) === undefined) {
    throw ApiError.invalidRequest(
      `Missing required parameter: '${param}'.`,
      param,
      'missing_required_parameter',
    );
  }
  throw ApiError.invalidRequest(`Invalid value for '${param}': ${issue.message}`, param, 'invalid_value');
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
