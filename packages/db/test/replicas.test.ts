/**
 * ReplicaPool against real streaming replication: a native PostgreSQL 15 primary and two
 * hot standbys made with `pg_basebackup -R` (see @llmq/embedded's native-postgres.ts), one
 * of them replaying commits 2 s late (`recovery_min_apply_delay`).
 *
 * Native PostgreSQL here has no pgvector (only PGlite has it), so these tables have no
 * vector columns: routing, health, read-your-writes and recovery conflicts do not depend on
 * the column types. Skipped, saying why, when /usr/lib/postgresql/15/bin is missing.
 */
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compareLsn, consistencyToken, createPool, isLsn, redactUrl, ReplicaPool, type Pool } from '@llmq/db';
import {
  findNativePostgres,
  nativePostgresOsUser,
  startNativePostgres,
  startStreamingReplica,
  type NativePostgresHandle,
} from '@llmq/embedded';
import { classifyReadError, type ReplicaPoolOptions } from '../src/replicas';

const PG15_BIN = '/usr/lib/postgresql/15/bin';
const binDir = findNativePostgres(PG15_BIN);
if (!binDir) {
  console.warn(
    `skipping the read-replica tests: no PostgreSQL 15 server binaries in ${PG15_BIN} (apt-get install postgresql-15)`,
  );
}
const describeIfNativePostgres = binDir ? describe : describe.skip;

describe('LSNs', () => {
  it('compares X/Y positions as 64-bit numbers', () => {
    expect(compareLsn('0/16B3748', '0/16B3750')).toBe(-1);
    expect(compareLsn('1/0', '0/FFFFFFFF')).toBe(1);
    expect(compareLsn('0/0A', '0/a')).toBe(0);
    expect(compareLsn('16/B374D848', '9/FFFFFFFF')).toBe(1); // hex, not text: '16' < '9' as strings
  });

  it('refuses what is not an LSN', () => {
    expect(isLsn('0/16B3748')).toBe(true);
    expect(isLsn('16B3748')).toBe(false);
    expect(isLsn('0/1G')).toBe(false);
    expect(() => compareLsn('latest', '0/1')).toThrow(TypeError);
  });
});

describe('classifyReadError', () => {
  const pgError = (code: string, message: string) => Object.assign(new Error(message), { code });

  it('recognises recovery conflicts, and only those among serialization failures', () => {
    expect(classifyReadError(pgError('40001', 'canceling statement due to conflict with recovery'))).toBe(
      'recovery-conflict',
    );
    expect(classifyReadError(pgError('40001', 'terminating connection due to conflict with recovery'))).toBe(
      'recovery-conflict',
    );
    expect(classifyReadError(pgError('40P01', 'canceling statement due to conflict with recovery'))).toBe(
      'recovery-conflict',
    );
    expect(
      classifyReadError(pgError('40001', 'could not serialize access due to read/write dependencies')),
    ).toBe('query');
  });

  it('treats refused, lost and shutting-down connections as an unavailable replica', () => {
    expect(
      classifyReadError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })),
    ).toBe('unavailable');
    expect(classifyReadError(new Error('Connection terminated unexpectedly'))).toBe('unavailable');
    expect(classifyReadError(new Error('timeout exceeded when trying to connect'))).toBe('unavailable');
    expect(classifyReadError(pgError('57P01', 'terminating connection due to administrator command'))).toBe(
      'unavailable',
    );
    expect(classifyReadError(pgError('57P03', 'the database system is starting up'))).toBe('unavailable');
    expect(classifyReadError(pgError('08006', 'connection failure'))).toBe('unavailable');
  });

  it('leaves query errors to the caller', () => {
    expect(classifyReadError(pgError('25006', 'cannot execute INSERT in a read-only transaction'))).toBe(
      'query',
    );
    expect(classifyReadError(pgError('42P01', 'relation "nope" does not exist'))).toBe('query');
    expect(classifyReadError(pgError('57014', 'canceling statement due to statement timeout'))).toBe('query');
  });

  it('redacts passwords from replica URLs', () => {
    expect(redactUrl('postgres://reader:s3cret@db-replica-1:5432/llmq')).toBe(
      'postgres://reader:***@db-replica-1:5432/llmq',
    );
    expect(redactUrl('not a url with s3cret')).toBe('(not a URL)');
  });
});

describeIfNativePostgres('ReplicaPool on a primary with two streaming replicas', () => {
  let tempDir: string;
  let primary: NativePostgresHandle;
  let fast: NativePostgresHandle; // replays at once; cancels conflicting reads after 100 ms
  let delayed: NativePostgresHandle; // replays commits 2 s late
  let primaryPool: Pool;
  const pools: { end(): Promise<void> }[] = [];
  const replicaPools: ReplicaPool[] = [];

  const directPools = new Map<string, Pool>();
  /** A plain pool on one server, to look at it without going through a ReplicaPool. */
  function direct(url: string): Pool {
    let pool = directPools.get(url);
    if (!pool) {
      pool = createPool({ connectionString: url, max: 2 });
      directPools.set(url, pool);
      pools.push(pool);
    }
    return pool;
  }

  function replicaPool(urls: string[], extra: Partial<ReplicaPoolOptions> = {}): ReplicaPool {
    const pool = new ReplicaPool({
      primary: primaryPool,
      replicaUrls: urls,
      healthIntervalMs: 200,
      ...extra,
    });
    replicaPools.push(pool);
    return pool;
  }

  async function portOf(pool: ReplicaPool, minLsn?: string | null): Promise<number> {
    const { rows } = await pool.query<{ port: number }>('SELECT inet_server_port() AS port', [], { minLsn });
    return rows[0]!.port;
  }

  async function waitFor(what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async function replayed(server: NativePostgresHandle, lsn: string): Promise<boolean> {
    const { rows } = await direct(server.url).query<{ lsn: string }>(
      'SELECT pg_last_wal_replay_lsn()::text AS lsn',
    );
    return compareLsn(rows[0]!.lsn, lsn) >= 0;
  }

  beforeAll(async () => {
    tempDir = mkdtempSync(path.join(os.tmpdir(), 'llmq-replicas-'));
    const runAs = nativePostgresOsUser(); // root: the servers run as postgres, which must reach tempDir
    if (runAs) chownSync(tempDir, runAs.uid, runAs.gid);
    const common = { binDir, durable: false, socketDir: path.join(tempDir, 'sockets') };
    primary = await startNativePostgres({
      ...common,
      dataDir: path.join(tempDir, 'primary'),
      // no autovacuum: its ANALYZE commits would reach the delayed replica 2 s late and make its lag vary
      settings: { shared_buffers: '32MB', max_connections: 40, autovacuum: false },
    });
    [fast, delayed] = await Promise.all([
      startStreamingReplica(primary, {
        ...common,
        dataDir: path.join(tempDir, 'fast'),
        settings: { max_standby_streaming_delay: '100ms' },
      }),
      startStreamingReplica(primary, {
        ...common,
        dataDir: path.join(tempDir, 'delayed'),
        applyDelayMs: 2_000,
      }),
    ]);
    primaryPool = createPool({ connectionString: primary.url, max: 5 });
    pools.push(primaryPool);
    await primaryPool.query('CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL)');
    await primaryPool.query(`INSERT INTO docs SELECT g, 'doc ' || g FROM generate_series(1, 100) g`);
    const token = (await consistencyToken(primaryPool))!;
    await waitFor(
      'both replicas have the docs table',
      async () => (await replayed(fast, token)) && replayed(delayed, token),
    );
  }, 60_000);

  afterEach(async () => {
    await Promise.all(replicaPools.splice(0).map((pool) => pool.close()));
  });

  afterAll(async () => {
    await Promise.all(replicaPools.splice(0).map((pool) => pool.close()));
    await Promise.all(pools.splice(0).map((pool) => pool.end()));
    await Promise.all([fast, delayed, primary].map((server) => server?.stop()));
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  }, 30_000);

  it('with no replica URLs is a pass-through to the primary, writes included', async () => {
    const pool = replicaPool([]);
    pool.start();
    expect(await portOf(pool)).toBe(primary.port);
    await pool.query('INSERT INTO docs VALUES (1001, $1)', ['through the pass-through']);
    expect((await primaryPool.query('SELECT body FROM docs WHERE id = 1001')).rows).toEqual([
      { body: 'through the pass-through' },
    ]);
    expect(pool.status()).toEqual([]);
  });

  it('sends reads to the primary until a replica passes a health check, then only to replicas, in turn', async () => {
    const pool = replicaPool([fast.url, delayed.url]);
    expect(await portOf(pool)).toBe(primary.port);

    await pool.checkHealth();
    const ports = [];
    for (let i = 0; i < 10; i++) ports.push(await portOf(pool));
    expect(ports).toEqual(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? fast.port : delayed.port)));
    expect(pool.status().map(({ healthy, lastLsn }) => ({ healthy, lsn: isLsn(lastLsn ?? '') }))).toEqual([
      { healthy: true, lsn: true },
      { healthy: true, lsn: true },
    ]);
  });

  it('spreads concurrent reads by how many each replica is running', async () => {
    const pool = replicaPool([fast.url, delayed.url]);
    await pool.checkHealth();
    const reads = Array.from({ length: 8 }, () =>
      pool.query<{ port: number }>('SELECT inet_server_port() AS port FROM pg_sleep(0.2)'),
    );
    expect(pool.status().map((replica) => replica.inFlight)).toEqual([4, 4]);
    const ports = (await Promise.all(reads)).map((result) => result.rows[0]!.port);
    expect(ports.filter((port) => port === fast.port)).toHaveLength(4);
    expect(ports.filter((port) => port === delayed.port)).toHaveLength(4);
  });

  it('cannot write through the replica path, even when a replica URL points at the primary', async () => {
    const pool = replicaPool([primary.url, fast.url]);
    await pool.checkHealth();
    expect(pool.status().map((replica) => replica.healthy)).toEqual([true, true]);
    for (let i = 0; i < 2; i++) {
      // one attempt on each: the primary's URL first, then the real replica
      await expect(pool.query('INSERT INTO docs VALUES (2000, $1)', ['must not land'])).rejects.toMatchObject(
        {
          code: '25006',
        },
      );
    }
    expect((await primaryPool.query('SELECT count(*)::int AS n FROM docs WHERE id = 2000')).rows).toEqual([
      { n: 0 },
    ]);
    // and both still serve reads
    expect(new Set([await portOf(pool), await portOf(pool)])).toEqual(new Set([primary.port, fast.port]));
  });

  it('keeps options already in a replica URL and redacts its password in status()', async () => {
    const url = `postgres://postgres:s3cret@127.0.0.1:${fast.port}/postgres?options=-c%20search_path%3Dreplica_test`;
    const pool = replicaPool([url]);
    await pool.checkHealth();
    const { rows } = await pool.query<{ search_path: string; read_only: string; port: number }>(
      `SELECT current_setting('search_path') AS search_path,
              current_setting('default_transaction_read_only') AS read_only, inet_server_port() AS port`,
    );
    expect(rows).toEqual([{ search_path: 'replica_test', read_only: 'on', port: fast.port }]);
    expect(pool.status()[0]!.url).toBe(
      `postgres://postgres:***@127.0.0.1:${fast.port}/postgres?options=-c%20search_path%3Dreplica_test`,
    );
  });

  it('reads with a consistency token see a row the delayed replica has not replayed yet', async () => {
    const onlyDelayed = replicaPool([delayed.url]);
    const both = replicaPool([fast.url, delayed.url]);
    await Promise.all([onlyDelayed.checkHealth(), both.checkHealth()]);

    await primaryPool.query(`INSERT INTO docs VALUES (3000, 'fresh')`);
    const token = await consistencyToken(primaryPool);
    expect(token).not.toBeNull();
    const read = (pool: ReplicaPool, minLsn?: string | null) =>
      pool.query<{ n: number; port: number }>(
        'SELECT count(*)::int AS n, inet_server_port() AS port FROM docs WHERE id = 3000',
        [],
        { minLsn },
      );

    // a plain read on the delayed replica does not see it yet; one with the token does, elsewhere
    expect((await read(onlyDelayed)).rows).toEqual([{ n: 0, port: delayed.port }]);
    expect((await read(onlyDelayed, token)).rows).toEqual([{ n: 1, port: primary.port }]);
    const fromEither = (await read(both, token)).rows[0]!;
    expect(fromEither.n).toBe(1);
    expect([fast.port, primary.port]).toContain(fromEither.port);

    // once the delayed replica has replayed the token, reads carrying it go to the replica
    await waitFor('the delayed replica replays the insert', () => replayed(delayed, token!), 10_000);
    expect((await read(onlyDelayed, token)).rows).toEqual([{ n: 1, port: delayed.port }]);
  });

  it('leaves a replica lagging more than maxLagMs out of plain reads until it catches up', async () => {
    const pool = replicaPool([delayed.url], { maxLagMs: 500 });
    await pool.checkHealth();
    expect(await portOf(pool)).toBe(delayed.port);

    await primaryPool.query(`INSERT INTO docs VALUES (4000, 'lagging')`);
    const token = (await consistencyToken(primaryPool))!;
    await waitFor('the delayed replica has received the insert', async () => {
      const { rows } = await direct(delayed.url).query<{ lsn: string }>(
        'SELECT pg_last_wal_receive_lsn()::text AS lsn',
      );
      return compareLsn(rows[0]!.lsn, token) >= 0;
    });
    await new Promise((resolve) => setTimeout(resolve, 600));
    await pool.checkHealth();
    expect(pool.status()[0]).toMatchObject({ healthy: true });
    expect(pool.status()[0]!.lagMs).toBeGreaterThan(500);
    expect(await portOf(pool)).toBe(primary.port);

    await waitFor('the delayed replica replays the insert', () => replayed(delayed, token), 10_000);
    await pool.checkHealth();
    expect(pool.status()[0]!.lagMs).toBe(0);
    expect(await portOf(pool)).toBe(delayed.port);
  });

  it('retries on the primary a read that a recovery conflict cancelled on a replica', async () => {
    const warnings: string[] = [];
    const logger = { warn: (_: object, msg?: string) => warnings.push(msg ?? ''), info: () => undefined };
    const pool = replicaPool([fast.url], { logger });
    await primaryPool.query('CREATE TABLE conflicted (id int)');
    await primaryPool.query('INSERT INTO conflicted SELECT generate_series(1, 10)');
    const token = (await consistencyToken(primaryPool))!;
    await waitFor('the replica has the table', () => replayed(fast, token));
    await pool.checkHealth();

    // the read holds a lock on the table for a second; TRUNCATE on the primary needs it on the
    // replica too, which cancels the read after max_standby_streaming_delay (100 ms)
    const started = Date.now();
    const read = pool.query<{ n: number; port: number }>(
      'SELECT count(*)::int AS n, inet_server_port() AS port FROM conflicted, pg_sleep(1)',
    );
    await waitFor('the read runs on the replica', async () => {
      const { rows } = await direct(fast.url).query(
        `SELECT 1 FROM pg_stat_activity WHERE query LIKE '%FROM conflicted, pg_sleep%' AND pid <> pg_backend_pid()`,
      );
      return rows.length > 0;
    });
    await primaryPool.query('TRUNCATE conflicted');

    expect((await read).rows).toEqual([{ n: 0, port: primary.port }]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    expect(warnings).toEqual([expect.stringContaining('recovery conflict')]);
    expect(pool.status()[0]).toMatchObject({ healthy: true }); // a conflict is not a failure of the replica
  });

  it('removes a killed replica at once, falls back to the primary when none is left, and readmits restarted ones', async () => {
    const warnings: string[] = [];
    const infos: string[] = [];
    const logger = {
      warn: (_: object, msg?: string) => warnings.push(msg ?? ''),
      info: (_: object, msg?: string) => infos.push(msg ?? ''),
    };
    const pool = replicaPool([fast.url, delayed.url], { logger });
    await pool.checkHealth();
    expect(await portOf(pool)).toBe(fast.port); // idle connections to it are in the pool now

    fast.kill(); // SIGKILL to the postmaster and its backends, like a machine dying
    await fast.exited;
    // the next read would go to it: it fails, is retried on the primary, and the replica is out
    expect(await portOf(pool)).toBe(delayed.port);
    expect(await portOf(pool)).toBe(primary.port);
    expect(pool.status()[0]).toMatchObject({ healthy: false, lastError: expect.any(String) });
    expect(warnings).toHaveLength(1);
    for (let i = 0; i < 4; i++) expect(await portOf(pool)).toBe(delayed.port);

    delayed.kill();
    await delayed.exited;
    await pool.checkHealth();
    expect(pool.status().map((replica) => replica.healthy)).toEqual([false, false]);
    for (let i = 0; i < 3; i++) expect(await portOf(pool)).toBe(primary.port);

    pool.start(); // checks every 200 ms from here on
    fast = await fast.restart();
    await waitFor('the restarted replica is readmitted', () => pool.status()[0]!.healthy, 10_000);
    expect(infos).toContain('replica readmitted');
    for (let i = 0; i < 3; i++) expect(await portOf(pool)).toBe(fast.port);

    delayed = await delayed.restart();
    await waitFor('the second replica is readmitted', () => pool.status()[1]!.healthy, 10_000);
    const ports = new Set<number>();
    for (let i = 0; i < 4; i++) ports.add(await portOf(pool));
    expect(ports).toEqual(new Set([fast.port, delayed.port]));
  });
});
