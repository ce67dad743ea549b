/** What the spawned servers (redis-server, the PGlite server) have in common. */
import type { ChildProcess } from 'node:child_process';

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A server running as a child process of this one. */
export interface ServerProcess {
  /** Where clients connect: `redis://127.0.0.1:PORT` or `postgres://postgres:postgres@127.0.0.1:PORT/postgres`. */
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly process: ChildProcess;
  /** Settles when the process has exited, however that happened. */
  readonly exited: Promise<ExitInfo>;
  /**
   * Asks the server to shut down cleanly (SIGTERM: Redis fsyncs its AOF, the PGlite server
   * closes the database) and resolves once it has exited; after `stopTimeoutMs` it is
   * SIGKILLed. Resolves at once if it already exited.
   */
  stop(): Promise<void>;
  /** Sends `signal` without waiting (await `exited` for that). @defaultValue `'SIGKILL'` */
  kill(signal?: NodeJS.Signals): void;
  /** The last lines the server printed (stdout and stderr interleaved), for diagnostics. */
  output(): string;
}

/** Keeps the last `limit` characters a process printed, to quote them in errors. */
export class OutputTail {
  private text = '';

  constructor(private readonly limit = 8_000) {}

  push(chunk: Buffer | string): void {
    this.text += chunk.toString();
    if (this.text.length > this.limit * 2) this.text = this.text.slice(-this.limit);
  }

  toString(): string {
    return this.text.slice(-this.limit);
  }
}

export function exitOf(child: ChildProcess): Promise<ExitInfo> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // spawn failures (ENOENT, EACCES) emit 'error' and no 'exit'
    child.once('error', () => {
      if (child.pid === undefined) resolve({ code: null, signal: null });
    });
  });
}

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

// Children still running when this process exits get SIGTERM, so a test run or a crashed
// `npm start` does not leave servers holding ports and data directories. One listener for
// all children: a listener per child would trip Node's MaxListeners warning in test suites.
const orphans = new Set<ChildProcess>();
let exitHookInstalled = false;

function terminateOrphans(): void {
  for (const child of orphans) {
    if (!hasExited(child)) child.kill('SIGTERM');
  }
}

export function terminateWithParent(child: ChildProcess): void {
  orphans.add(child);
  child.once('exit', () => orphans.delete(child));
  if (!exitHookInstalled) {
    process.on('exit', terminateOrphans);
    exitHookInstalled = true;
  }
}

/**
 * Asks a process to stop with `signal` and waits for it; after `timeoutMs` it is killed with
 * `forceKill` (SIGKILL by default). Resolves at once if it already exited.
 */
export async function stopProcess(
  child: ChildProcess,
  exited: Promise<ExitInfo>,
  options: { signal: NodeJS.Signals; timeoutMs: number; forceKill?: () => void },
): Promise<void> {
  if (hasExited(child)) return;
  child.kill(options.signal);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    exited.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), options.timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    (options.forceKill ?? (() => child.kill('SIGKILL')))();
    await exited;
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Builds the handle once the server is ready. */
export function serverProcess(options: {
  child: ChildProcess;
  exited: Promise<ExitInfo>;
  url: string;
  port: number;
  tail: OutputTail;
  stopTimeoutMs: number;
}): ServerProcess {
  const { child, exited, url, port, tail, stopTimeoutMs } = options;
  if (child.pid === undefined) throw new Error('the child process has no pid');
  return {
    url,
    port,
    pid: child.pid,
    process: child,
    exited,
    output: () => tail.toString(),
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!hasExited(child)) child.kill(signal);
    },
    stop: () => stopProcess(child, exited, { signal: 'SIGTERM', timeoutMs: stopTimeoutMs }),
  };
}
