/**
 * Reads on streaming replicas (DESIGN.md: "RAG context → pgvector read replicas").
 *
 * A {@link ReplicaPool} sends reads to healthy replicas and everything else to the primary.
 * Replica connections are read-only at the session level, so a read retried after a failed
 * connection can never have written anything, and a URL that points at a primary by mistake
 * still cannot be written through. Read-your-writes uses the primary's WAL position as a
 * consistency token: a read carrying one goes to a replica that has replayed that far, or to
 * the primary.
 */
import { Pool, type PoolClient, type QueryResult, type QueryResultRow } from 'pg';

export interface ReadOptions {
  /** Consistency token ({@link consistencyToken}): read only from a server that has replayed this LSN. */
  minLsn?: string | null;
}

/** What code that only reads takes: a {@link ReplicaPool} (a pass-through to the primary when there are no replicas). */
export interface ReadPool {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- pg's own default row type
  query<R extends QueryResultRow = any>(
    text: string,
    values?: unknown[],
    options?: ReadOptions,
  ): Promise<QueryResult<R>>;
}

/** The subset of a pino logger used here. */
export interface ReplicaPoolLogger {
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
}

export interface ReplicaPoolOptions {
  /** Where writes go, and reads when no replica can serve them. Not closed by {@link ReplicaPool.close}. */
  primary: Pool;
  /** `postgres://` URLs of the replicas (`DATABASE_REPLICA_URLS`); empty makes the pool a pass-through to `primary`. */
  replicaUrls: readonly string[];
  /** Connections per replica. @defaultValue `10` */
  poolMax?: number;
  /** How often each replica is checked; a failed check removes it, a later good one readmits it. @defaultValue `2000` */
  healthIntervalMs?: number;
  /** How long a health check may take before it counts as failed. @defaultValue `max(1000, healthIntervalMs)` */
  healthTimeoutMs?: number;
  /**
   * A replica whose replay lags further behind than this serves no plain reads (reads with a
   * token it has replayed still go to it). `Infinity` turns the check off. @defaultValue `30_000`
   */
  maxLagMs?: number;
  /** Server-side statement timeout on replicas, in ms. @defaultValue `30_000` */
  statementTimeoutMs?: number;
  /** How long to wait for a replica connection. @defaultValue `5_000` */
  connectionTimeoutMs?: number;
  /** Replicas removed and readmitted, reads retried on the primary. @defaultValue none */
  logger?: ReplicaPoolLogger;
  /** Name shown in the replicas' pg_stat_activity. @defaultValue `'llmq-replica'` */
  applicationName?: string;
}

export interface ReplicaStatus {
  /** The URL with its password redacted. */
  url: string;
  /** Serving reads: the last check (or read) succeeded. */
  healthy: boolean;
  /** Last known replay LSN (the current WAL position for a server not in recovery), or null before the first check. */
  lastLsn: string | null;
  /** Replay lag in ms at the last check (0 when it had replayed all it received). */
  lagMs: number | null;
  /** Reads running on it now. */
  inFlight: number;
  lastCheckedAt: Date | null;
  /** Why it was last removed. */
  lastError?: string;
}

/** Every replica session is read-only, whatever the server: see the module comment. */
const READ_ONLY_OPTIONS = '-c default_transaction_read_only=on';

/** The replica's position and lag in one round trip; a primary reports its current WAL position. */
const HEALTH_SQL = `SELECT pg_is_in_recovery() AS in_recovery,
  (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS lsn,
  (CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
        ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000 END)::float8 AS lag_ms`;

const LSN_SQL = `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
  ELSE pg_current_wal_lsn() END)::text AS lsn`;

interface Replica {
  readonly url: string;
  readonly pool: Pool;
  /** One connection of its own, so a replica whose read pool is saturated still answers its check. */
  readonly healthPool: Pool;
  healthy: boolean;
  lastLsn: string | null;
  lagMs: number | null;
  inFlight: number;
  lastCheckedAt: Date | null;
  lastError: string | undefined;
}

/**
 * Reads balanced over healthy replicas (least in-flight, ties in turn), falling back to the
 * primary. Call {@link start} to begin health checks: until a replica passes one, reads go
 * to the primary.
 */
export class ReplicaPool implements ReadPool {
  private readonly primary: Pool;
  private readonly replicas: Replica[];
  private readonly healthIntervalMs: number;
  private readonly healthTimeoutMs: number;
  private readonly maxLagMs: number;
  private readonly logger: ReplicaPoolLogger | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private refreshing: Promise<void> | undefined;
  private nextIndex = 0;
  private closed = false;

  constructor(options: ReplicaPoolOptions) {
    this.primary = options.primary;
    this.healthIntervalMs = options.healthIntervalMs ?? 2_000;
    this.healthTimeoutMs = options.healthTimeoutMs ?? Math.max(1_000, this.healthIntervalMs);
    this.maxLagMs = options.maxLagMs ?? 30_000;
    this.logger = options.logger;
    this.replicas = options.replicaUrls.map((url, index) => {
      const connectionString = readOnlyConnectionString(url, index);
      const common = {
        connectionString,
        connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
        idleTimeoutMillis: 30_000,
        statement_timeout: options.statementTimeoutMs ?? 30_000,
        application_name: options.applicationName ?? 'llmq-replica',
      };
      const pool = new Pool({ ...common, max: options.poolMax ?? 10 });
      const healthPool = new Pool({ ...common, max: 1 });
      // a replica going away must not crash the process through an idle client's error
      pool.on('error', () => undefined);
      healthPool.on('error', () => undefined);
      return {
        url: redactUrl(url),
        pool,
        healthPool,
        healthy: false,
        lastLsn: null,
        lagMs: null,
        inFlight: 0,
        lastCheckedAt: null,
        lastError: undefined,
      };
    });
  }

  /** Checks every replica now, then every `healthIntervalMs`. */
  start(): void {
    if (this.timer || this.closed || this.replicas.length === 0) return;
    void this.checkHealth();
    this.timer = setInterval(() => void this.checkHealth(), this.healthIntervalMs);
    this.timer.unref();
  }

  /** One round of health checks (joins the one running, if any); resolves when it is done. */
  checkHealth(): Promise<void> {
    this.checking ??= Promise.all(this.replicas.map((replica) => this.checkReplica(replica))).then(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  /** Stops the checks and closes the replica pools (the primary is the caller's). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.checking;
    await Promise.all(this.replicas.flatMap((replica) => [replica.pool.end(), replica.healthPool.end()]));
  }

  status(): ReplicaStatus[] {
    return this.replicas.map((replica) => ({
      url: replica.url,
      healthy: replica.healthy,
      lastLsn: replica.lastLsn,
      lagMs: replica.lagMs,
      inFlight: replica.inFlight,
      lastCheckedAt: replica.lastCheckedAt,
      ...(replica.lastError === undefined ? {} : { lastError: replica.lastError }),
    }));
  }

  /**
   * Runs a read on a replica, or on the primary when none is healthy (or, with `minLsn`,
   * none has replayed the token). A replica that cannot be reached is removed and the read
   * retried on the primary, as is a read cancelled by a recovery conflict. Other errors
   * (a bad query, a write refused with 25006) are the caller's.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- pg's own default row type
  async query<R extends QueryResultRow = any>(
    text: string,
    values?: unknown[],
    options?: ReadOptions,
  ): Promise<QueryResult<R>> {
    const minLsn = options?.minLsn ?? null;
    if (minLsn !== null) assertLsn(minLsn);
    if (this.replicas.length === 0) return this.primary.query<R>(text, values);

    const replica = this.pick(minLsn) ?? (minLsn === null ? undefined : await this.pickAfterRefresh(minLsn));
    if (!replica) return this.primary.query<R>(text, values);

    replica.inFlight++;
    let failure: unknown;
    try {
      return await replica.pool.query<R>(text, values);
    } catch (error) {
      failure = error;
    } finally {
      replica.inFlight--;
    }
    const kind = classifyReadError(failure);
    switch (kind) {
      case 'recovery-conflict':
        this.logger?.warn(
          { replica: replica.url, err: failure },
          'read cancelled by a recovery conflict on a replica; retrying it on the primary',
        );
        return this.primary.query<R>(text, values);
      case 'unavailable':
        this.markDown(replica, failure);
        return this.primary.query<R>(text, values);
      case 'query':
        throw failure;
    }
  }

  /** Least in-flight among the replicas that may serve this read; ties go in turn. */
  private pick(minLsn: string | null): Replica | undefined {
    const count = this.replicas.length;
    let best: { replica: Replica; index: number } | undefined;
    for (let step = 0; step < count; step++) {
      const index = (this.nextIndex + step) % count;
      const replica = this.replicas[index];
      if (!replica || !this.mayServe(replica, minLsn)) continue;
      if (!best || replica.inFlight < best.replica.inFlight) best = { replica, index };
    }
    if (!best) return undefined;
    this.nextIndex = (best.index + 1) % count;
    return best.replica;
  }

  private mayServe(replica: Replica, minLsn: string | null): boolean {
    if (!replica.healthy) return false;
    if (minLsn === null) return replica.lagMs === null || replica.lagMs <= this.maxLagMs;
    return replica.lastLsn !== null && compareLsn(replica.lastLsn, minLsn) >= 0;
  }

  /**
   * No replica was known to have replayed the token at its last check: ask them all once
   * (one query each, shared by the reads waiting meanwhile) before giving the read to the primary.
   */
  private async pickAfterRefresh(minLsn: string): Promise<Replica | undefined> {
    if (!this.replicas.some((replica) => replica.healthy)) return undefined;
    this.refreshing ??= Promise.all(
      this.replicas.filter((replica) => replica.healthy).map((replica) => this.refreshLsn(replica)),
    ).then(() => {
      this.refreshing = undefined;
    });
    await this.refreshing;
    return this.pick(minLsn);
  }

  private async refreshLsn(replica: Replica): Promise<void> {
    try {
      const { rows } = await replica.pool.query<{ lsn: string | null }>(LSN_SQL);
      this.advanceLsn(replica, rows[0]?.lsn ?? null);
    } catch (error) {
      if (classifyReadError(error) === 'unavailable') this.markDown(replica, error);
    }
  }

  private async checkReplica(replica: Replica): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const check = replica.healthPool.query<{
        in_recovery: boolean;
        lsn: string | null;
        lag_ms: number | null;
      }>(HEALTH_SQL);
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`health check timed out after ${this.healthTimeoutMs} ms`)),
          this.healthTimeoutMs,
        );
      });
      check.catch(() => undefined); // it may fail after the timeout won
      const { rows } = await Promise.race([check, timeout]);
      const row = rows[0];
      if (this.closed || !row) return;
      replica.lastCheckedAt = new Date();
      replica.lagMs = row.lag_ms === null ? null : Math.max(0, Math.round(row.lag_ms));
      this.advanceLsn(replica, row.lsn);
      if (!replica.healthy) {
        replica.healthy = true;
        this.logger?.info(
          { replica: replica.url, lsn: replica.lastLsn, inRecovery: row.in_recovery },
          replica.lastError === undefined ? 'replica serving reads' : 'replica readmitted',
        );
      }
    } catch (error) {
      if (this.closed) return;
      replica.lastCheckedAt = new Date();
      this.markDown(replica, error);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Replay only moves forward; an answer that arrives late must not move it back. */
  private advanceLsn(replica: Replica, lsn: string | null): void {
    if (lsn === null || !isLsn(lsn)) return;
    if (replica.lastLsn === null || compareLsn(lsn, replica.lastLsn) > 0) replica.lastLsn = lsn;
  }

  private markDown(replica: Replica, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    const wasHealthy = replica.healthy;
    replica.healthy = false;
    replica.lastError = message;
    if (wasHealthy) {
      this.logger?.warn(
        { replica: replica.url, err: error },
        'replica removed from reads until a health check passes',
      );
    }
  }
}

/**
 * The primary's WAL position now, as a consistency token for reads after a write: take it
 * after the write commits and pass it as {@link ReadOptions.minLsn}. `pg_current_wal_lsn()`
 * is where WAL has been written to, which covers a commit made with `synchronous_commit` on
 * (the default); a commit made with it `off` may not be covered yet. Null when the server
 * does not have the function (PGlite may not) or is itself in recovery.
 */
export async function consistencyToken(client: Pool | PoolClient): Promise<string | null> {
  try {
    const { rows } = await client.query<{ lsn: string | null }>('SELECT pg_current_wal_lsn()::text AS lsn');
    return rows[0]?.lsn ?? null;
  } catch (error) {
    // undefined_function, feature_not_supported, "recovery is in progress"
    if (['42883', '0A000', '55000'].includes(sqlState(error) ?? '')) return null;
    throw error;
  }
}

const LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** True for an LSN in PostgreSQL's text form, `X/Y` (two hex numbers of up to 32 bits). */
export function isLsn(text: string): boolean {
  return LSN.test(text);
}

function assertLsn(text: string): void {
  if (!isLsn(text))
    throw new TypeError(`not a WAL position (LSN) of the form X/Y in hex: ${JSON.stringify(text)}`);
}

function lsnValue(text: string): bigint {
  const match = LSN.exec(text);
  if (!match?.[1] || !match[2])
    throw new TypeError(`not a WAL position (LSN) of the form X/Y in hex: ${JSON.stringify(text)}`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** Compares two LSNs (`'16/B374D848'`): negative, zero or positive, like a sort comparator. */
export function compareLsn(a: string, b: string): number {
  const x = lsnValue(a);
  const y = lsnValue(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** What a failed replica read means for routing. */
export type ReadErrorKind =
  /** cancelled because replay needed what the read held: the same read succeeds on the primary */
  | 'recovery-conflict'
  /** the replica cannot be reached or is shutting down: remove it, retry on the primary */
  | 'unavailable'
  /** the read itself failed: the caller's error */
  | 'query';

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  '57P01', // admin_shutdown: the replica is stopping
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: starting up, or not yet consistent
  '53300', // too_many_connections
]);

/** pg reports a lost or refused connection with these messages and no code. */
const UNREACHABLE_MESSAGE =
  /Connection terminated|timeout exceeded when trying to connect|connection error|Client was closed|Cannot use a pool after calling end/i;

/** Classifies an error from a replica read (exported for its unit test). */
export function classifyReadError(error: unknown): ReadErrorKind {
  const code = sqlState(error);
  const message = error instanceof Error ? error.message : String(error);
  // 40001 also means an ordinary serialization failure (SERIALIZABLE), which is the caller's
  if (code === '40P01') return 'recovery-conflict';
  if ((code === '40001' || code === '57P04') && /conflict with recovery/i.test(message))
    return 'recovery-conflict';
  if (code !== undefined && (code.startsWith('08') || UNREACHABLE_CODES.has(code))) return 'unavailable';
  if (code === undefined && UNREACHABLE_MESSAGE.test(message)) return 'unavailable';
  return 'query';
}

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The URL with the read-only session option added to any `options` it has (URL parameters override pg's config). */
function readOnlyConnectionString(url: string, index: number): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(
      `replica URL #${index + 1} is not a URL (postgres://user:password@host:port/database)`,
    );
  }
  const existing = parsed.searchParams.get('options');
  parsed.searchParams.set('options', existing ? `${existing} ${READ_ONLY_OPTIONS}` : READ_ONLY_OPTIONS);
  return parsed.toString();
}

/** The URL with its password replaced by `***`, for logs and {@link ReplicaPool.status}. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(not a URL)';
  }
}
