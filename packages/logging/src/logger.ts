import pino, { type DestinationStream, type Level, type Logger } from 'pino';
import { scrubError } from './errors';

export interface LoggerOptions {
  /** The `service` field of every line, e.g. `llmq-api`. */
  service: string;
  /** @defaultValue "info" */
  level?: Level | 'silent';
  /**
   * Log prompt and completion text (request bodies, job specs, provider error text that may echo
   * them). For debugging only: logs usually live longer and reach more people than the data.
   * Credentials stay redacted either way. @defaultValue false
   */
  logPrompts?: boolean;
  /** Where lines go. @defaultValue standard output */
  destination?: DestinationStream;
}

/** What the redaction puts in place of a value. */
export const CENSOR = '[redacted]';

/**
 * Credentials: redacted always. pino's paths match fields of the logged object (`*` is one level
 * of nesting), after serializers ran.
 */
export const SECRET_PATHS: readonly string[] = [
  'authorization',
  'cookie',
  'headers.authorization',
  'headers.cookie',
  'headers["x-api-key"]',
  'headers["api-key"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["x-api-key"]',
  '*.headers["api-key"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'apiKey',
  '*.apiKey',
  'api_key',
  '*.api_key',
  'key',
  '*.key',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'adminToken',
  '*.adminToken',
];

/**
 * Prompt and completion text, and what carries it (job specs and payloads, request and response
 * bodies, the arguments of a failed Redis command such as BullMQ's job data): redacted unless
 * `logPrompts`.
 */
export const PROMPT_PATHS: readonly string[] = [
  'spec',
  '*.spec',
  'messages',
  '*.messages',
  '*.*.messages',
  'prompt',
  '*.prompt',
  '*.*.prompt',
  'content',
  '*.content',
  'text',
  '*.text',
  'result',
  '*.result',
  'completion',
  '*.completion',
  'input',
  '*.input',
  'body',
  '*.body',
  'data',
  '*.data',
  'payload',
  '*.payload',
  'command.args',
  '*.command.args',
];

/**
 * A pino logger whose lines never hold credentials and, unless `logPrompts`, no prompt or
 * completion text: fields are redacted by name ({@link SECRET_PATHS}, {@link PROMPT_PATHS}) and
 * errors are scrubbed of provider text that may echo the request ({@link scrubError}).
 */
export function createLogger(options: LoggerOptions): Logger {
  const logPrompts = options.logPrompts ?? false;
  const logger = pino(
    {
      level: options.level ?? 'info',
      base: { service: options.service, pid: process.pid },
      redact: { paths: [...SECRET_PATHS, ...(logPrompts ? [] : PROMPT_PATHS)], censor: CENSOR },
      serializers: {
        err: (e: unknown) => scrubError(e, { logPrompts }),
        error: (e: unknown) => scrubError(e, { logPrompts }),
      },
    },
    options.destination,
  );
  if (logPrompts) {
    logger.warn('LOG_PROMPTS is on: prompt and completion text may appear in these logs');
  }
  return logger;
}
