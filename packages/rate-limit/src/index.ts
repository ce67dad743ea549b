export { limiterKeys } from './keys';
export { REVOCATION_MARKER_MS, markKeyRevoked } from './revocation';
export { KeyLimiter, budgetResetMs, budgetWindows, toMicros } from './limiter';
export type {
  AdmitRequest,
  BucketState,
  Decision,
  EffectiveLimits,
  KeyLimiterOptions,
  LimitState,
  RejectReason,
  SettleRequest,
  SpendAlarmOptions,
} from './limiter';
export { openAiDuration, rateLimitHeaders } from './headers';
export { Accounting } from './accounting';
