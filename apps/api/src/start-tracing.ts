import { startTracing } from '@llmq/tracing';

/**
 * main.ts imports this module before any other, so that OpenTelemetry's instrumentations (when
 * the OTEL_ variables turn tracing on) are in place before http, express, ioredis, pg and pino
 * are loaded: an instrumentation patches a module as it is required.
 */
export const tracing = startTracing('llmq-api', process.env);
