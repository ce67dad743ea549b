export { freePort, dialHost, hostForUrl } from './ports';
export type { ExitInfo, ServerProcess } from './child-process';
export { DataDirLockedError, ProcessStartError, RedisServerNotFoundError } from './errors';
export {
  locateRedisServer,
  redisAnswers,
  startRedisServer,
  type LocateRedisServerOptions,
  type RedisServerHandle,
  type StartRedisServerOptions,
} from './redis-server';
export {
  isMemoryDataDir,
  openPglite,
  parsePgliteServerArgs,
  PGLITE_MEMORY,
  pgliteUrl,
  runPgliteServer,
  servePglite,
  type PgliteServerArgs,
  type PgliteService,
  type RunningPgliteServer,
  type RunPgliteServerOptions,
  type ServePgliteOptions,
} from './pglite-server';
export {
  openPgliteDirect,
  pgliteServerEntry,
  startPgliteServer,
  type PgliteServerHandle,
  type StartPgliteServerOptions,
} from './pglite-process';
export {
  acquireDataDirLock,
  readDataDirLock,
  LOCK_FILE_NAME,
  type DataDirLock,
  type DataDirLockHolder,
} from './pid-lock';
export {
  DEBIAN_POSTGRES_LIB,
  findNativePostgres,
  locateNativePostgres,
  nativePostgresOsUser,
  NativePostgresUnavailableError,
  startNativePostgres,
  startStreamingReplica,
  type NativePostgresHandle,
  type NativePostgresOsUser,
  type PostgresSettings,
  type StartNativePostgresOptions,
  type StartStreamingReplicaOptions,
} from './native-postgres';
