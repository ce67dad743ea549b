export { LlmClient } from './client';
export type { AttemptReport, LlmClientOptions, StreamRequest, StreamResult } from './client';
export {
  ProvidersFileError,
  Registry,
  RegistryWatcher,
  buildRegistry,
  loadRegistryFile,
  providersFileSchema,
  DEFAULT_CONTEXT_WINDOW,
} from './registry';
export type { BackendConfig, ModelRoute, ProvidersFile, Target } from './registry';
export {
  AttemptsExhaustedError,
  ProviderError,
  RetryLaterError,
  StreamBrokenError,
  classifyStatus,
} from './errors';
export type { ErrorClass, ProviderErrorDetails } from './errors';
export { CircuitBreaker } from './breaker';
export type { BreakerOptions, BreakerState } from './breaker';
export { PeakEwma, cost, pickTwo } from './balancer';
export type { Candidate } from './balancer';
export { backoffDelay, parseRetryAfter, sleep } from './retry';
export { costOf, countPromptTokens, countTextTokens } from './tokens';
export type { LlmHooks } from './hooks';
export { anthropicAdapter } from './adapters/anthropic';
export { openaiAdapter } from './adapters/openai';
export type { Adapter, StreamPiece, UpstreamRequest } from './adapters/types';
export { NEVER_FITS, RedisFleetLimiter, UnlimitedLimiter } from './fleet-limiter';
export type {
  Admission,
  BackendLimits,
  FleetLimiter,
  RedisFleetLimiterOptions,
  Reservation,
} from './fleet-limiter';
