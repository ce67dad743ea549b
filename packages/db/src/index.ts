export { createPool } from './pool';
export type { Pool, PoolClient, PoolOptions } from './pool';
export { loadMigrations, migrate } from './migrate';
export type { Migration } from './migrate';
export { ApiKeyRepository, generateApiKey, hashApiKey, looksLikeApiKey } from './api-keys';
export type { ApiKeyRecord } from './api-keys';
export { JobRepository } from './jobs';
export type { InsertOutcome, JobOutcome, JobRecord, JobRepositoryOptions, NewJob } from './jobs';
export { GroupCommitter } from './batcher';
