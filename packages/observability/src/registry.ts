import { Registry, collectDefaultMetrics } from 'prom-client';

export interface RegistryOptions {
  /**
   * Node's and the process' standard metrics (`process_cpu_seconds_total`,
   * `nodejs_eventloop_lag_seconds`, heap, GC, handles), unprefixed so stock dashboards work.
   * @defaultValue true
   */
  defaultMetrics?: boolean;
}

/**
 * prom-client's defaults that are gauges named `_total`: promtool (rightly) flags the name, and
 * each is the sum of the per-type gauge beside it (`sum(nodejs_active_handles)`).
 */
const MISNAMED_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** A registry of its own per process (never prom-client's global one, so tests can build several). */
export function newRegistry(options: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry });
    for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
  }
  return registry;
}
