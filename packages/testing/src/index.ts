export { spawnService } from './process';
export type { ServiceProcess, SpawnOptions } from './process';
export { PrometheusServer, prometheusTool, promtoolCheckMetrics } from './prometheus';
export type { ScrapeTargets } from './prometheus';
export { readSse } from './sse';
export type { ReadSseOptions, SseEvent, SseResult } from './sse';
export { REPO_ROOT, TestStack, defaultProviders, eventually, useStack } from './stack';
export type { PolledJob, StackOptions, SubmitBody } from './stack';
