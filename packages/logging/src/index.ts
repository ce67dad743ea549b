export { CENSOR, PROMPT_PATHS, SECRET_PATHS, createLogger } from './logger';
export type { LoggerOptions } from './logger';
export { UPSTREAM_TEXT, scrubError } from './errors';
export type { Logger } from 'pino';
