import { spawn, type ChildProcess } from 'node:child_process';

export interface ServiceProcess {
  name: string;
  process: ChildProcess;
  pid: number;
  /** The line that announced readiness (e.g. "llmq-api listening on http://…"). */
  readyLine: string;
  /** The last lines the process printed (stdout and stderr), for error messages. */
  output(): string;
  /** Sends a signal and waits for the exit; SIGKILLs after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface SpawnOptions {
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string>;
  /** A line matching this means the service is ready. */
  ready: RegExp;
  /** @defaultValue 30000 */
  timeoutMs?: number;
  /** Echo the process' output to this test's stderr (LLMQ_TEST_VERBOSE=1 does it for all). */
  verbose?: boolean;
}

const MAX_LINES = 200;

/** Spawns a real process and resolves once it prints its ready line. */
export function spawnService(options: SpawnOptions): Promise<ServiceProcess> {
  const child = spawn(options.command, options.args, {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const verbose = options.verbose ?? process.env.LLMQ_TEST_VERBOSE === '1';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise<ServiceProcess>((resolve, reject) => {
    let ready = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `${options.name} was not ready within ${options.timeoutMs ?? 30_000} ms:\n${lines.join('\n')}`,
        ),
      );
    }, options.timeoutMs ?? 30_000);
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        lines.push(line);
        if (lines.length > MAX_LINES) lines.shift();
        if (verbose) process.stderr.write(`[${options.name}] ${line}\n`);
        if (!ready && options.ready.test(line)) {
          ready = true;
          clearTimeout(timer);
          resolve(handle(line));
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => {
      if (!ready) {
        clearTimeout(timer);
        reject(
          new Error(`${options.name} exited (${code ?? signal}) before it was ready:\n${lines.join('\n')}`),
        );
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });

  function handle(readyLine: string): ServiceProcess {
    return {
      name: options.name,
      process: child,
      pid: child.pid!,
      readyLine,
      output: () => lines.join('\n'),
      exited,
      async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000) {
        if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        const code = await exited;
        clearTimeout(timer);
        return code;
      },
    };
  }
}
