/** Starting the PGlite server as a child process, and opening PGlite in-process. */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import {
  delay,
  exitOf,
  hasExited,
  OutputTail,
  serverProcess,
  terminateWithParent,
  type ServerProcess,
} from './child-process';
import { ProcessStartError } from './errors';
import { acquireDataDirLock } from './pid-lock';
import { isMemoryDataDir, openPglite, PGLITE_MEMORY } from './pglite-server';

export interface StartPgliteServerOptions {
  /** A directory (created if missing, locked while served), or `'memory://'` / `'memory'`. */
  dataDir: string;
  /** @defaultValue `0` (the server picks a free port; read it from the handle) */
  port?: number;
  /** @defaultValue `'127.0.0.1'` */
  host?: string;
  /** @defaultValue `100` */
  maxConnections?: number;
  /** How long to wait for the listening line (a cold PGlite start takes 2 to 5 s). @defaultValue `60_000` */
  startTimeoutMs?: number;
  /** How long {@link ServerProcess.stop} waits after SIGTERM before SIGKILL. @defaultValue `15_000` */
  stopTimeoutMs?: number;
  /** The compiled server entry. @defaultValue {@link pgliteServerEntry}() */
  entry?: string;
}

export interface PgliteServerHandle extends ServerProcess {
  /** The resolved data directory, or `'memory://'`. */
  readonly dataDir: string;
}

/**
 * The compiled `bin/pglite-server.js` next to this module. When this module runs from its
 * TypeScript source (jest maps `@llmq/embedded` to `src/`), that is `../dist/bin/...`, so
 * the package must have been built (`npm test` builds first).
 */
export function pgliteServerEntry(): string {
  const besideThis = path.join(__dirname, 'bin', 'pglite-server.js');
  if (existsSync(besideThis)) return besideThis;
  const built = path.join(__dirname, '..', 'dist', 'bin', 'pglite-server.js');
  if (path.basename(__dirname) === 'src' && existsSync(built)) return built;
  throw new Error(
    `${besideThis} does not exist: build @llmq/embedded first (npm run build -w @llmq/embedded)`,
  );
}

const LISTENING = /^pglite listening on (postgres:\/\/\S+)$/m;

/**
 * Spawns the PGlite server (`node dist/bin/pglite-server.js`) and resolves once it
 * listens. Throws {@link ProcessStartError}, quoting its output, if it exits first (for
 * instance because another server holds the directory) or does not listen in time.
 *
 * If PGlite fails inside a query the server exits with code 70 (see pglite-guard.ts);
 * watch {@link ServerProcess.exited} to restart it.
 */
export async function startPgliteServer(options: StartPgliteServerOptions): Promise<PgliteServerHandle> {
  const dataDir = isMemoryDataDir(options.dataDir) ? PGLITE_MEMORY : path.resolve(options.dataDir);
  const settings: [string, string][] = [
    ['data', dataDir],
    ['port', String(options.port ?? 0)],
    ['host', options.host ?? '127.0.0.1'],
    ['max-connections', String(options.maxConnections ?? 100)],
  ];
  const args = [
    options.entry ?? pgliteServerEntry(),
    ...settings.flatMap(([name, value]) => [`--${name}`, value]),
  ];
  // stdin is a pipe only so that the server stops when this process dies without stopping it
  const child = spawn(process.execPath, [...args, '--stop-when-stdin-closes'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const tail = new OutputTail();
  const exited = exitOf(child);
  terminateWithParent(child);
  child.stderr?.on('data', (chunk: Buffer) => tail.push(chunk));

  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  const outcome = await new Promise<{ url: string } | { failure: string }>((resolve) => {
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      tail.push(chunk);
      stdout += chunk.toString();
      const match = LISTENING.exec(stdout);
      if (match?.[1]) resolve({ url: match[1] });
    });
    child.once('error', (error) =>
      resolve({ failure: `could not run ${process.execPath}: ${error.message}` }),
    );
    void exited.then((exit) =>
      resolve({ failure: `it exited (code ${String(exit.code)}, signal ${String(exit.signal)})` }),
    );
    timer = setTimeout(
      () => resolve({ failure: `it did not print its listening line within ${startTimeoutMs} ms` }),
      startTimeoutMs,
    );
  });
  clearTimeout(timer);

  if ('failure' in outcome) {
    if (!hasExited(child)) child.kill('SIGKILL');
    const exit = await exited;
    await delay(20); // the last stderr chunk may trail the exit event
    throw new ProcessStartError('the PGlite server', outcome.failure, tail.toString(), exit.code);
  }
  const handle = serverProcess({
    child,
    exited,
    url: outcome.url,
    port: Number(new URL(outcome.url).port),
    tail,
    stopTimeoutMs: options.stopTimeoutMs ?? 15_000,
  });
  return { ...handle, dataDir };
}

/**
 * Opens PGlite with pgvector in this process, for tools (the CLI) that run when no server
 * is. Holds the directory lock until `close()`: throws {@link DataDirLockedError} (whose
 * `url` says where to connect instead) while a server or another process has it open.
 */
export async function openPgliteDirect(dataDir: string): Promise<PGlite> {
  if (isMemoryDataDir(dataDir)) return openPglite(PGLITE_MEMORY);
  const lock = acquireDataDirLock(dataDir);
  let db: PGlite;
  try {
    db = await openPglite(dataDir);
  } catch (error) {
    lock.release();
    throw error;
  }
  const close = db.close.bind(db);
  db.close = async () => {
    try {
      await close();
    } finally {
      lock.release();
    }
  };
  return db;
}
