/**
 * The PGlite server as a real process. These tests spawn the compiled
 * dist/bin/pglite-server.js, so the package must be built first: `npm test` builds before
 * running jest (by hand: cd packages/embedded && npx tsc -p tsconfig.json).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Pool } from 'pg';
import { LOCK_FILE_NAME, ProcessStartError, startPgliteServer, type PgliteServerHandle } from '../src';
import { assertServerBuilt, tempDirs } from './helpers';

const dirs = tempDirs();
const running: PgliteServerHandle[] = [];
const pools: Pool[] = [];

async function start(options: Parameters<typeof startPgliteServer>[0]): Promise<PgliteServerHandle> {
  const handle = await startPgliteServer(options);
  running.push(handle);
  return handle;
}

function pool(url: string, max: number): Pool {
  const created = new Pool({ connectionString: url, max });
  created.on('error', () => undefined); // idle clients see the server stop at the end of a test
  pools.push(created);
  return created;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(() => assertServerBuilt());

afterEach(async () => {
  await Promise.all(pools.splice(0).map((created) => (created.ended ? undefined : created.end())));
  await Promise.all(running.splice(0).map((handle) => handle.stop()));
  dirs.cleanup();
});

describe('the PGlite server process', () => {
  it('serves pgvector: an HNSW cosine index finds the nearest row', async () => {
    const server = await start({ dataDir: dirs.make() });
    expect(server.url).toBe(`postgres://postgres:postgres@127.0.0.1:${server.port}/postgres`);
    const db = pool(server.url, 2);
    await db.query('CREATE TABLE docs (id int PRIMARY KEY, embedding vector(3) NOT NULL)');
    await db.query('CREATE INDEX docs_embedding ON docs USING hnsw (embedding vector_cosine_ops)');
    await db.query(`INSERT INTO docs VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0,0,1]'), (4, '[1,1,0]')`);

    const nearest = await db.query<{ id: number }>('SELECT id FROM docs ORDER BY embedding <=> $1 LIMIT 1', [
      '[0.1,0.9,0.05]',
    ]);
    expect(nearest.rows).toEqual([{ id: 2 }]);

    const client = await db.connect();
    try {
      await client.query('SET enable_seqscan = off');
      const plan = await client.query(`EXPLAIN SELECT id FROM docs ORDER BY embedding <=> '[0,0,1]' LIMIT 1`);
      expect(JSON.stringify(plan.rows)).toContain('Index Scan using docs_embedding');
    } finally {
      client.release();
    }
  });

  it('answers 20 concurrent queries on a pool of 5, each with its own result', async () => {
    const server = await start({ dataDir: 'memory' });
    expect(server.dataDir).toBe('memory://');
    const db = pool(server.url, 5);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        db.query<{ n: number; label: string }>('SELECT $1::int * 2 AS n, $2::text AS label, pg_sleep(0.01)', [
          i,
          `q${i}`,
        ]),
      ),
    );
    expect(results.map((result) => result.rows[0])).toEqual(
      Array.from({ length: 20 }, (_, i) => ({ n: i * 2, label: `q${i}`, pg_sleep: '' })),
    );
  });

  it('keeps extended-protocol queries of concurrent connections apart when a parameter spans several reads', async () => {
    // A 300 KB parameter arrives in several TCP reads, which let other connections' Parse
    // messages in between this one's Parse and Bind until pglite-guard.ts kept them apart.
    const server = await start({ dataDir: 'memory' });
    const db = pool(server.url, 10);
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        try {
          if (i % 4 === 0) {
            const big = 'x'.repeat(300_000 + i);
            const { rows } = await db.query('SELECT length($1::text) AS len, $2::int AS i', [big, i]);
            return rows[0].len === big.length && rows[0].i === i ? 'ok' : `wrong ${JSON.stringify(rows[0])}`;
          }
          const { rows } = await db.query('SELECT $1::int + 1 AS v', [i]);
          return rows[0].v === i + 1 ? 'ok' : `wrong ${JSON.stringify(rows[0])}`;
        } catch (error) {
          return `error ${(error as Error).message}`;
        }
      }),
    );
    expect(outcomes.filter((outcome) => outcome !== 'ok')).toEqual([]);
  });

  it('holds other connections while one is inside a transaction, then shows them its commit', async () => {
    const server = await start({ dataDir: 'memory' });
    const db = pool(server.url, 3);
    await db.query('CREATE TABLE t (v int)');
    const writer = await db.connect();
    try {
      await writer.query('BEGIN');
      await writer.query('INSERT INTO t VALUES (1)');
      let readerDone = false;
      const reader = db.query<{ n: string }>('SELECT count(*) AS n FROM t').then((result) => {
        readerDone = true;
        return result.rows[0]?.n;
      });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(readerDone).toBe(false); // one PGlite session: the reader waits for the transaction
      await writer.query('COMMIT');
      expect(await reader).toBe('1');
    } finally {
      writer.release();
    }
  });

  it('answers an unknown frontend message with FATAL instead of hanging, and keeps serving', async () => {
    const server = await start({ dataDir: 'memory' });
    const socket = net.connect(server.port, '127.0.0.1');
    const reply = await new Promise<Buffer>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('data', resolve);
      socket.write(Buffer.from([0x5a, 0, 0, 0, 4])); // 'Z' is a backend message type
    });
    socket.destroy();
    expect(reply.subarray(0, 1).toString()).toBe('E');
    expect(reply.toString('latin1')).toContain('08P01');
    const db = pool(server.url, 1);
    expect((await db.query('SELECT 41 + 1 AS v')).rows).toEqual([{ v: 42 }]);
  });

  it('keeps its data across a SIGTERM and a restart on the same directory and port', async () => {
    const dataDir = dirs.make();
    const first = await start({ dataDir });
    const db = pool(first.url, 2);
    await db.query('CREATE TABLE jobs (id text PRIMARY KEY, embedding vector(3))');
    await db.query(`INSERT INTO jobs VALUES ('job-1', '[1,2,3]')`);
    await db.end();
    await first.stop();
    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(existsSync(path.join(dataDir, LOCK_FILE_NAME))).toBe(false);

    const second = await start({ dataDir, port: first.port });
    expect(second.url).toBe(first.url);
    const again = pool(second.url, 1);
    expect((await again.query('SELECT id, embedding::text AS e FROM jobs')).rows).toEqual([
      { id: 'job-1', e: '[1,2,3]' },
    ]);
  });

  it('refuses a second server on a directory while the first serves it', async () => {
    const dataDir = dirs.make();
    const first = await start({ dataDir });
    const lock = readFileSync(path.join(dataDir, LOCK_FILE_NAME), 'utf8');
    expect(lock).toBe(`${first.pid}\n${first.url}\n`);

    const second = startPgliteServer({ dataDir });
    await expect(second).rejects.toBeInstanceOf(ProcessStartError);
    await expect(second).rejects.toMatchObject({ exitCode: 1 });
    await expect(second).rejects.toThrow(`in use by process ${first.pid} (serving ${first.url})`);

    const db = pool(first.url, 1);
    expect((await db.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
  });

  it('takes over the lock a dead server left behind', async () => {
    const dataDir = dirs.make();
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
      encoding: 'utf8',
    });
    const deadPid = Number(gone.stdout);
    expect(deadPid).toBeGreaterThan(0);
    writeFileSync(path.join(dataDir, LOCK_FILE_NAME), `${deadPid}\npostgres://old\n`);

    const server = await start({ dataDir });
    expect(readFileSync(path.join(dataDir, LOCK_FILE_NAME), 'utf8')).toBe(`${server.pid}\n${server.url}\n`);
  });

  it('exits with code 70, releasing its directory, when PGlite throws inside a query', async () => {
    const dataDir = dirs.make();
    const server = await start({ dataDir, entry: path.join(__dirname, 'fixtures', 'failing-server.js') });
    const db = pool(server.url, 2);
    expect((await db.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
    await expect(db.query(`SELECT 'injected_failure'`)).rejects.toThrow();
    expect(await server.exited).toEqual({ code: 70, signal: null });
    expect(server.output()).toContain('injected WASM trap');
    expect(existsSync(path.join(dataDir, LOCK_FILE_NAME))).toBe(false);
  });

  it('closes cleanly when the process that started it dies without stopping it', async () => {
    const dataDir = dirs.make();
    const parent = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'start-server.js'), dataDir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const started = await new Promise<{ pid: number }>((resolve, reject) => {
      parent.stdout.once('data', (chunk: Buffer) => resolve(JSON.parse(chunk.toString()) as { pid: number }));
      parent.once('exit', (code) => reject(new Error(`the parent exited with ${String(code)}`)));
    });
    expect(isAlive(started.pid)).toBe(true);
    parent.kill('SIGKILL');

    const deadline = Date.now() + 20_000;
    while (isAlive(started.pid) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 100));
    expect(isAlive(started.pid)).toBe(false);
    // only a clean close releases the lock (a killed server leaves it behind)
    expect(existsSync(path.join(dataDir, LOCK_FILE_NAME))).toBe(false);
  });

  it('reports why it could not start, with the output of the server', async () => {
    const attempt = startPgliteServer({ dataDir: dirs.make(), host: '192.0.2.1' });
    await expect(attempt).rejects.toBeInstanceOf(ProcessStartError);
    await expect(attempt).rejects.toThrow(/EADDRNOTAVAIL/);
  });
});
