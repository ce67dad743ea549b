export { createWorker } from './worker';
export type { WorkerDeps } from './worker';
export { createGenerateProcessor } from './pipeline';
export { Reconciler } from './reconciler';
export { TokenCoalescer } from './coalescer';
export { workerEnvSchema } from './config';
