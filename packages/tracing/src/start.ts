import { tracingEnabled } from './config';

export interface Tracing {
  /** Whether spans are recorded and exported in this process. */
  readonly enabled: boolean;
  /** Exports the spans still buffered and stops; call it last in a graceful shutdown. */
  shutdown(): Promise<void>;
}

const DISABLED: Tracing = { enabled: false, shutdown: async () => undefined };

/**
 * Starts OpenTelemetry tracing when the standard OTEL_ variables ask for it (see
 * {@link tracingEnabled}); otherwise does nothing and loads nothing of the SDK.
 *
 * Call it before the modules it instruments are loaded (http, express, ioredis, pg, pino): an
 * instrumentation patches a module when it is required. The apps do so from a module that
 * `main.ts` imports first.
 *
 * The exporters, sampler, propagators and resource come from the OTEL_ variables, read by the SDK
 * itself from `process.env` (the OpenTelemetry convention); `env` decides only whether to start.
 * `OTEL_SERVICE_NAME` overrides `serviceName`.
 */
export function startTracing(
  serviceName: string,
  env: Readonly<Record<string, string | undefined>>,
): Tracing {
  if (!tracingEnabled(env)) return DISABLED;
  // Loaded only when on: the SDK and its exporters weigh some 40 ms of startup.
  const { startSdk } = require('./sdk') as typeof import('./sdk');
  return startSdk(env.OTEL_SERVICE_NAME?.trim() || serviceName);
}
