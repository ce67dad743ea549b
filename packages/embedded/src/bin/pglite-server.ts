#!/usr/bin/env node
/**
 * The PGlite server process: `node dist/bin/pglite-server.js --data DIR [--port N]
 * [--host H] [--max-connections N]`. Stdout carries exactly one line, `pglite listening on
 * postgres://...`, which {@link startPgliteServer} waits for; everything else goes to
 * stderr. Exit codes: 0 after SIGTERM/SIGINT, 1 when it cannot start (directory locked,
 * PGlite failed), 2 on bad arguments, 70 when PGlite failed inside a query and the
 * server can serve nothing more (restart it).
 */
import { DataDirLockedError } from '../errors';
import {
  parsePgliteServerArgs,
  PGLITE_SERVER_USAGE,
  runPgliteServer,
  UsageError,
  type RunningPgliteServer,
} from '../pglite-server';

// Emscripten prints through console.log; keep stdout for the listening line alone.
console.log = console.error;
console.info = console.error;

const EXIT_QUEUE_FAILURE = 70; // EX_SOFTWARE
// a first start runs initdb (several seconds); a signal during it waits for it to finish
const SHUTDOWN_TIMEOUT_MS = 30_000;

async function main(): Promise<void> {
  let args;
  try {
    args = parsePgliteServerArgs(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`pglite-server: ${error.message}\n${PGLITE_SERVER_USAGE}`);
    process.exit(2);
  }

  // Signals are handled from the start: killing PGlite halfway through initdb would leave
  // a directory it cannot open again.
  let server: RunningPgliteServer | undefined;
  let stopRequested = false;
  const shutdown = (signal: string) => {
    if (stopRequested) return;
    stopRequested = true;
    console.error(`pglite-server: ${signal}, closing the database`);
    setTimeout(() => {
      console.error(`pglite-server: not closed after ${SHUTDOWN_TIMEOUT_MS} ms, exiting anyway`);
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS).unref();
    if (server) void closeAndExit(server);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  if (args.stopWhenStdinCloses) {
    // a parent that dies without stopping us (SIGKILL, a killed test worker) closes the pipe
    process.stdin.on('end', () => shutdown('stdin closed'));
    process.stdin.on('error', () => shutdown('stdin closed'));
    process.stdin.resume();
  }

  try {
    server = await runPgliteServer({
      ...args,
      onQueueFailure(error) {
        console.error(
          'pglite-server: PGlite threw while executing a query; the socket server cannot run another query ' +
            '(electric-sql/pglite#1046), so this process exits for its supervisor to restart it.',
          error,
        );
        process.exit(EXIT_QUEUE_FAILURE); // the directory lock is released by its exit hook
      },
    });
  } catch (error) {
    const text =
      error instanceof DataDirLockedError ? error.message : String((error as Error)?.stack ?? error);
    console.error(`pglite-server: refusing to start: ${text}`);
    process.exit(1);
  }
  if (stopRequested) return closeAndExit(server);
  process.stdout.write(`pglite listening on ${server.url}\n`);
}

async function closeAndExit(server: RunningPgliteServer): Promise<void> {
  try {
    await server.close();
  } catch (error) {
    console.error('pglite-server: closing failed', error);
    process.exit(1);
  }
  process.exit(0);
}

main().catch((error: unknown) => {
  console.error('pglite-server: fatal', error);
  process.exit(1);
});
