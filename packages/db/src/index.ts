export { createPool, inTransaction } from './pool';
export type { Pool, PoolClient, PoolOptions } from './pool';
export { loadMigrations, migrate } from './migrate';
export type { Migration } from './migrate';
export {
  ApiKeyRepository,
  KEY_LIMIT_MAXIMA,
  KEY_NAME_MAX_LENGTH,
  MAX_ACTIVE_JOBS_MAXIMUM,
  MAX_LIST_LIMIT,
  generateApiKey,
  hashApiKey,
  isApiKeyId,
  isUsdAmount,
  isValidTenantId,
  looksLikeApiKey,
  validateKeyLimits,
} from './api-keys';
export type { ApiKeyRecord, KeyLimits, ListKeysOptions, TenantLimits } from './api-keys';
export { JobRepository } from './jobs';
export type { InsertOutcome, JobOutcome, JobRecord, JobRepositoryOptions, NewJob } from './jobs';
export { GroupCommitter } from './batcher';
export { UsageLedger } from './usage';
export type { AttemptEntry, CacheStatus, JobCharge, UsageRow } from './usage';
export { ReplicaPool, compareLsn, consistencyToken, isLsn, redactUrl } from './replicas';
export type { ReadOptions, ReadPool, ReplicaPoolLogger, ReplicaPoolOptions, ReplicaStatus } from './replicas';
export { ConversationRepository } from './conversations';
export type { ConversationTurn, TurnHistory } from './conversations';
export {
  BATCH_STATUSES,
  BatchRepository,
  FileRepository,
  OPEN_BATCH_STATUSES,
  isBatchId,
  isFileId,
  newBatchId,
  newFileId,
} from './batches';
export type {
  BatchError,
  BatchLine,
  BatchOutputs,
  BatchRecord,
  BatchResult,
  BatchStatus,
  BuiltOutputs,
  CancelBatchOutcome,
  CancelledBatchJobs,
  CreateBatchOutcome,
  CreateFileOutcome,
  FilePurpose,
  FileRecord,
  FinalizeOptions,
  FinalizeOutcome,
  NewBatch,
  NewFile,
  QueuedBatchJob,
  RequestCounts,
} from './batches';
