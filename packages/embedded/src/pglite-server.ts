/**
 * PGlite (Postgres compiled to WASM) with pgvector, served over the Postgres wire protocol
 * so that `pg` pools in the API and workers use it like any Postgres. This module runs
 * inside the server process (`bin/pglite-server.ts`); {@link startPgliteServer} spawns it.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { delay } from './child-process';
import { acquireDataDirLock, type DataDirLock } from './pid-lock';
import { guardSocketDb } from './pglite-guard';
import { hostForUrl } from './ports';

/** The `dataDir` that keeps the database in memory (`'memory'` is accepted too). */
export const PGLITE_MEMORY = 'memory://';

export function isMemoryDataDir(dataDir: string): boolean {
  return dataDir === PGLITE_MEMORY || dataDir === 'memory';
}

/** The URL clients use; PGlite accepts any user and password and has one database. */
export function pgliteUrl(host: string, port: number): string {
  return `postgres://postgres:postgres@${hostForUrl(host)}:${port}/postgres`;
}

/**
 * Opens PGlite on `dataDir` (created if missing; {@link PGLITE_MEMORY} for memory) with
 * the vector extension created. Takes no lock: see {@link openPgliteDirect} and
 * {@link runPgliteServer}, which do.
 */
export async function openPglite(dataDir: string): Promise<PGlite> {
  const memory = isMemoryDataDir(dataDir);
  if (!memory) await mkdir(dataDir, { recursive: true });
  const db = new PGlite(memory ? PGLITE_MEMORY : path.resolve(dataDir), { extensions: { vector } });
  try {
    await db.waitReady;
    await db.exec('CREATE EXTENSION IF NOT EXISTS vector');
  } catch (error) {
    await db.close().catch(() => undefined);
    throw error;
  }
  return db;
}

export interface ServePgliteOptions {
  /** @defaultValue `0` (a free port; read it from the result) */
  port?: number;
  /** @defaultValue `'127.0.0.1'` */
  host?: string;
  /**
   * Connections served at once; all share PGlite's single backend through a queue.
   * pglite-socket's own default is 1, which a `pg` pool exhausts at once.
   * @defaultValue `100`
   */
  maxConnections?: number;
  /** A query threw inside PGlite and the socket server can serve nothing more (see pglite-guard.ts). */
  onQueueFailure(error: unknown): void;
}

export interface PgliteService {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Closes every connection and stops listening (the database stays open). */
  stop(): Promise<void>;
}

/** Serves an open PGlite over the wire protocol. */
export async function servePglite(db: PGlite, options: ServePgliteOptions): Promise<PgliteService> {
  const host = options.host ?? '127.0.0.1';
  const guarded = guardSocketDb(db, { onQueueFailure: options.onQueueFailure });
  const server = new PGLiteSocketServer({
    db: guarded.db,
    host,
    port: options.port ?? 0,
    maxConnections: options.maxConnections ?? 100,
  });
  await server.start();
  // "host:port" with the bound port (the server reads it back after listening on 0)
  const port = Number(server.getServerConn().slice(server.getServerConn().lastIndexOf(':') + 1));
  return {
    url: pgliteUrl(host, port),
    host,
    port,
    async stop() {
      guarded.stopping();
      // server.stop() waits for every socket to close; a client that ignores our FIN must
      // not hold the database open forever
      await Promise.race([server.stop(), delay(5_000)]);
    },
  };
}

export interface RunPgliteServerOptions extends ServePgliteOptions {
  /** A directory (locked with `llmq-pglite.pid` while served), or {@link PGLITE_MEMORY}. */
  dataDir: string;
}

export interface RunningPgliteServer extends PgliteService {
  /** Stops serving, closes the database (flushing it) and releases the directory lock. */
  close(): Promise<void>;
}

/**
 * Locks the data directory, opens it and serves it: everything the server process does
 * between parsing its arguments and waiting for a signal. Throws
 * {@link DataDirLockedError} when another live process holds the directory.
 */
export async function runPgliteServer(options: RunPgliteServerOptions): Promise<RunningPgliteServer> {
  const lock: DataDirLock | undefined = isMemoryDataDir(options.dataDir)
    ? undefined
    : acquireDataDirLock(options.dataDir);
  let db: PGlite | undefined;
  try {
    db = await openPglite(options.dataDir);
    const service = await servePglite(db, options);
    lock?.setUrl(service.url);
    const opened = db;
    return {
      ...service,
      async close() {
        try {
          await service.stop();
          await opened.close();
        } finally {
          lock?.release();
        }
      },
    };
  } catch (error) {
    await db?.close().catch(() => undefined);
    lock?.release();
    throw error;
  }
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const PGLITE_SERVER_USAGE = `usage: pglite-server --data DIR|memory:// [--port N] [--host H] [--max-connections N]
                     [--stop-when-stdin-closes]
  --data                    data directory (locked while served) or memory:// for an in-memory database
  --port                    TCP port; 0 picks a free one (default 0)
  --host                    interface to bind (default 127.0.0.1)
  --max-connections         connections served at once (default 100)
  --stop-when-stdin-closes  close cleanly when stdin ends (the parent holding the pipe died)
Prints "pglite listening on postgres://..." when ready; SIGTERM or SIGINT closes it cleanly.`;

export interface PgliteServerArgs extends Omit<RunPgliteServerOptions, 'onQueueFailure'> {
  /** Shut down when stdin reaches its end: how a spawned server notices its parent died. */
  stopWhenStdinCloses: boolean;
}

/** Parses the server's command line; throws {@link UsageError}. */
export function parsePgliteServerArgs(argv: readonly string[]): PgliteServerArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        data: { type: 'string' },
        port: { type: 'string', default: '0' },
        host: { type: 'string', default: '127.0.0.1' },
        'max-connections': { type: 'string', default: '100' },
        'stop-when-stdin-closes': { type: 'boolean', default: false },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (!values.data)
    throw new UsageError('--data is required (a directory, or memory:// for an in-memory database)');
  return {
    dataDir: values.data,
    port: integerArg('--port', values.port, 0, 65_535),
    host: values.host,
    maxConnections: integerArg('--max-connections', values['max-connections'], 1, 100_000),
    stopWhenStdinCloses: values['stop-when-stdin-closes'],
  };
}

function integerArg(name: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new UsageError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}
