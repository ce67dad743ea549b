import type { BreakerState } from './breaker';
import type { ErrorClass } from './errors';

/**
 * What the client reports as it works, for metrics (the observability issue wires these to
 * Prometheus). Every hook is optional and must not throw. Labels are bounded: backend ids and
 * model names come from the operator's providers file, never from requests.
 */
export interface LlmHooks {
  onAttempt?(e: { backendId: string; model: string }): void;
  onSuccess?(e: {
    backendId: string;
    model: string;
    latencyMs: number;
    ttftMs: number | null;
    promptTokens: number;
    completionTokens: number;
    costUsd: number;
  }): void;
  onError?(e: {
    backendId: string;
    model: string;
    errorClass: ErrorClass;
    code: string;
    latencyMs: number;
  }): void;
  onRetry?(e: { backendId: string; model: string; delayMs: number }): void;
  onFallback?(e: { from: string; to: string }): void;
  onBreaker?(e: { backendId: string; state: BreakerState }): void;
  onRejectedByLimit?(e: { backendId: string; reason: 'requests' | 'tokens' }): void;
}
