/**
 * Native PostgreSQL clusters as child processes: initdb, start, fast stop, SIGKILL and
 * restart, and a streaming replica from pg_basebackup. Skipped, saying why, when the
 * PostgreSQL 15 server binaries are not in /usr/lib/postgresql/15/bin.
 */
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Pool } from 'pg';
import {
  findNativePostgres,
  locateNativePostgres,
  nativePostgresOsUser,
  NativePostgresUnavailableError,
  ProcessStartError,
  startNativePostgres,
  startStreamingReplica,
  type NativePostgresHandle,
} from '../src';
import { tempDirs } from './helpers';

const PG15_BIN = '/usr/lib/postgresql/15/bin';
const binDir = findNativePostgres(PG15_BIN);
if (!binDir) {
  console.warn(`skipping the native PostgreSQL tests: no PostgreSQL 15 server binaries in ${PG15_BIN}`);
}
const describeIfNativePostgres = binDir ? describe : describe.skip;

const dirs = tempDirs();
const running: NativePostgresHandle[] = [];
const pools: Pool[] = [];
const runAs = binDir ? nativePostgresOsUser() : undefined;

/** A temp directory the servers' OS user can enter (as root they run as postgres). */
function workDir(): string {
  const dir = dirs.make('llmq-native-pg-');
  if (runAs) chownSync(dir, runAs.uid, runAs.gid);
  return dir;
}

function track(handle: NativePostgresHandle): NativePostgresHandle {
  running.push(handle);
  return handle;
}

function pool(url: string): Pool {
  const created = new Pool({ connectionString: url, max: 2 });
  created.on('error', () => undefined); // idle clients see the server die in some tests
  pools.push(created);
  return created;
}

/** Running: neither gone nor a zombie waiting for init to reap it. */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

afterEach(async () => {
  await Promise.all(pools.splice(0).map((created) => (created.ended ? undefined : created.end())));
  await Promise.all(running.splice(0).map((handle) => handle.stop()));
  dirs.cleanup();
});

describe('locating PostgreSQL', () => {
  it('says what to install when the binaries are not where it was told to look', () => {
    const empty = dirs.make();
    expect(findNativePostgres(empty)).toBeUndefined();
    expect(() => locateNativePostgres(empty)).toThrow(NativePostgresUnavailableError);
    expect(() => locateNativePostgres(empty)).toThrow(/apt-get install postgresql-15/);
  });
});

describeIfNativePostgres('startNativePostgres', () => {
  it('initdbs an empty directory and serves it on loopback with replication settings', async () => {
    const dir = workDir();
    const server = track(
      await startNativePostgres({
        dataDir: path.join(dir, 'data'),
        binDir,
        durable: false,
        settings: { work_mem: '8MB' },
      }),
    );
    expect(server.url).toBe(`postgres://postgres@127.0.0.1:${server.port}/postgres`);
    const { rows } = await pool(server.url).query(
      `SELECT current_setting('listen_addresses') AS listen, current_setting('wal_level') AS wal_level,
              current_setting('hot_standby') AS hot_standby, current_setting('work_mem') AS work_mem,
              current_setting('fsync') AS fsync, pg_is_in_recovery() AS in_recovery`,
    );
    expect(rows).toEqual([
      {
        listen: '127.0.0.1',
        wal_level: 'replica',
        hot_standby: 'on',
        work_mem: '8MB',
        fsync: 'off',
        in_recovery: false,
      },
    ]);
    // the handle owns the postmaster itself, not a wrapper such as su
    expect(readFileSync(path.join(server.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]).toBe(
      String(server.pid),
    );
    if (runAs) {
      const uid = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))?.[1];
      expect(Number(uid)).toBe(runAs.uid);
    }
  });

  it('stops at once with clients connected, and keeps its data for the next start', async () => {
    const dir = workDir();
    const first = track(
      await startNativePostgres({ dataDir: path.join(dir, 'data'), binDir, durable: false }),
    );
    const db = pool(first.url);
    await db.query('CREATE TABLE kept (v text)');
    await db.query(`INSERT INTO kept VALUES ('across restarts')`);
    // an idle pooled client would hold off a smart shutdown (SIGTERM) forever
    const started = Date.now();
    await first.stop();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await first.exited).toEqual({ code: 0, signal: null });

    const second = track(await first.restart());
    expect(second.port).toBe(first.port);
    expect(second.pid).not.toBe(first.pid);
    expect((await pool(second.url).query('SELECT v FROM kept')).rows).toEqual([{ v: 'across restarts' }]);
  });

  it('kill() takes a busy backend down with the postmaster, and a restart recovers', async () => {
    const dir = workDir();
    const server = track(
      await startNativePostgres({ dataDir: path.join(dir, 'data'), binDir, durable: false }),
    );
    const db = pool(server.url);
    await db.query('CREATE TABLE t AS SELECT 1 AS v');
    // a backend busy computing never looks at whether the postmaster is still alive
    const busy = db
      .query('SELECT count(*) FROM generate_series(1, 100000000000)')
      .catch((error: Error) => error);
    let backend: number | undefined;
    while (backend === undefined) {
      const { rows } = await db.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE query LIKE '%generate_series(1, 100000000000)%' AND pid <> pg_backend_pid()`,
      );
      backend = rows[0]?.pid;
    }

    server.kill();
    expect((await server.exited).signal).toBe('SIGKILL');
    const deadline = Date.now() + 2_000;
    while (isRunning(backend) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(isRunning(backend)).toBe(false);
    expect(await busy).toBeInstanceOf(Error);

    const restarted = track(await server.restart());
    expect((await pool(restarted.url).query('SELECT v FROM t')).rows).toEqual([{ v: 1 }]);
  });

  it('fails with the server output when the port is taken', async () => {
    const dir = workDir();
    const first = track(
      await startNativePostgres({ dataDir: path.join(dir, 'one'), binDir, durable: false }),
    );
    const attempt = startNativePostgres({
      dataDir: path.join(dir, 'two'),
      binDir,
      durable: false,
      port: first.port,
    });
    await expect(attempt).rejects.toBeInstanceOf(ProcessStartError);
    await expect(attempt).rejects.toThrow(/could not (bind|create any TCP\/IP sockets)/);
  });

  it('refuses a non-empty directory that is not a cluster', async () => {
    const dir = workDir();
    const data = path.join(dir, 'data');
    mkdirSync(data);
    writeFileSync(path.join(data, 'notes.txt'), 'mine');
    await expect(startNativePostgres({ dataDir: data, binDir })).rejects.toThrow(
      /neither empty nor a PostgreSQL data directory/,
    );
  });

  (runAs ? it : it.skip)('as root, says when the postgres user cannot reach the data directory', async () => {
    const locked = dirs.make('llmq-native-pg-root-'); // mkdtemp: 0700, owned by root
    chmodSync(locked, 0o700);
    const attempt = startNativePostgres({ dataDir: path.join(locked, 'data'), binDir });
    await expect(attempt).rejects.toBeInstanceOf(NativePostgresUnavailableError);
    await expect(attempt).rejects.toThrow(/cannot enter .* chown it to postgres/);
  });
});

describeIfNativePostgres('startStreamingReplica', () => {
  it('makes a hot standby that replays the primary, keeping its apply delay across a restart', async () => {
    const dir = workDir();
    const primary = track(
      await startNativePostgres({ dataDir: path.join(dir, 'primary'), binDir, durable: false }),
    );
    const replica = track(
      await startStreamingReplica(primary, { dataDir: path.join(dir, 'replica'), applyDelayMs: 300 }),
    );
    const standby = pool(replica.url);
    expect((await standby.query('SELECT pg_is_in_recovery() AS r')).rows).toEqual([{ r: true }]);

    await pool(primary.url).query('CREATE TABLE replicated AS SELECT 42 AS v');
    const deadline = Date.now() + 10_000;
    let rows: unknown[] = [];
    while (Date.now() < deadline) {
      // "relation does not exist" until the replica has replayed the CREATE
      ({ rows } = await standby.query('SELECT v FROM replicated').catch(() => ({ rows: [] })));
      if (rows.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(rows).toEqual([{ v: 42 }]);
    await expect(standby.query('INSERT INTO replicated VALUES (1)')).rejects.toMatchObject({ code: '25006' });

    const restarted = track(await replica.restart());
    const after = pool(restarted.url);
    expect(
      (await after.query(`SELECT current_setting('recovery_min_apply_delay') AS d, pg_is_in_recovery() AS r`))
        .rows,
    ).toEqual([{ d: '300ms', r: true }]);
  });
});
