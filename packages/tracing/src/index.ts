export { tracingEnabled } from './config';
export { startTracing } from './start';
export type { Tracing } from './start';
export { currentTraceCarrier, withSpan } from './spans';
export type { SpanOptions, TraceCarrier } from './spans';
