/**
 * The one error class the simulator answers with. Everything a handler rejects becomes an
 * ApiError, and `sendError` (http.ts) turns it into the error shape of the API that was
 * called exactly once: OpenAI's, or Anthropic's under `/v1/messages`.
 */
export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'rate_limit_exceeded'
  | 'server_error';

export interface OpenAiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null };
}

/** Which API's error shape an answer uses. */
export type ErrorDialect = 'openai' | 'anthropic';

/** Anthropic's error types, one per HTTP status (https://docs.anthropic.com/en/api/errors). */
export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'billing_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'timeout_error'
  | 'overloaded_error';

export interface AnthropicErrorBody {
  type: 'error';
  error: { type: AnthropicErrorType; message: string };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toBody(): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }

  /** Anthropic's shape: the type follows from the status, as Anthropic's own do. */
  toAnthropicBody(): AnthropicErrorBody {
    return { type: 'error', error: { type: anthropicErrorType(this.status), message: this.message } };
  }

  static invalidRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
    return new ApiError(400, message, 'invalid_request_error', param, code);
  }

  static modelNotFound(model: string): ApiError {
    return new ApiError(
      404,
      `The model \`${model}\` does not exist or you do not have access to it.`,
      'invalid_request_error',
      'model',
      'model_not_found',
    );
  }

  /** Anthropic's wording for an unknown model (`not_found_error` by its status). */
  static anthropicModelNotFound(model: string): ApiError {
    return new ApiError(404, `model: ${model}`, 'invalid_request_error', 'model', 'model_not_found');
  }

  /** OpenAI answers unknown routes with this exact wording, including the method. */
  static invalidUrl(method: string, path: string): ApiError {
    return new ApiError(404, `Invalid URL (${method} ${path})`, 'invalid_request_error', null, null);
  }

  static tooLarge(limitBytes: number): ApiError {
    // `connection: close` because the rest of the oversized body is never parsed.
    return new ApiError(
      413,
      `Request body exceeds the limit of ${limitBytes} bytes.`,
      'invalid_request_error',
      null,
      'request_too_large',
      { connection: 'close' },
    );
  }

  static internal(message: string): ApiError {
    return new ApiError(500, message, 'server_error');
  }
}

/** The error a `status=N` fault answers with, shaped like OpenAI's own for that status. */
export function simulatedStatusError(
  status: number,
  retry: { retryAfterSeconds?: number; retryAfterMs?: number },
  extraHeaders: Readonly<Record<string, string>> = {},
): ApiError {
  const headers: Record<string, string> = { ...extraHeaders };
  if (retry.retryAfterSeconds !== undefined) headers['retry-after'] = String(retry.retryAfterSeconds);
  if (retry.retryAfterMs !== undefined) headers['retry-after-ms'] = String(retry.retryAfterMs);
  const [message, type, code] = describeStatus(status);
  return new ApiError(status, `${message} (simulated fault)`, type, null, code, headers);
}

function describeStatus(status: number): [string, ApiErrorType, string | null] {
  if (status === 429)
    return ['Rate limit reached for requests.', 'rate_limit_exceeded', 'rate_limit_exceeded'];
  if (status === 529) return ['Overloaded.', 'server_error', null];
  if (status >= 500) return ['The server had an error while processing your request.', 'server_error', null];
  if (status === 401) return ['Incorrect API key provided.', 'authentication_error', 'invalid_api_key'];
  if (status === 403) return ['You are not allowed to sample from this model.', 'permission_error', null];
  return [`The request was rejected with status ${status}.`, 'invalid_request_error', null];
}

function anthropicErrorType(status: number): AnthropicErrorType {
  switch (status) {
    case 401:
      return 'authentication_error';
    case 402:
      return 'billing_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 504:
      return 'timeout_error';
    case 529:
      return 'overloaded_error';
    default:
      return status >= 500 ? 'api_error' : 'invalid_request_error';
  }
}
