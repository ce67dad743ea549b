import { spawn, type ChildProcess } from 'node:child_process';

export interface ManagedSpec {
  name: string;
  entry: string;
  env: Record<string, string>;
  /** A line matching this means the process is up. */
  ready: RegExp;
}

/**
 * Runs a child process and restarts it when it dies on its own (exponential backoff, reset
 * after a minute of good health). Output lines are prefixed with the process name.
 */
export class Managed {
  private child: ChildProcess | null = null;
  private stopping = false;
  private restarts = 0;
  private startedAt = 0;
  readyLine: Promise<string>;
  private resolveReady!: (line: string) => void;

  constructor(
    private readonly spec: ManagedSpec,
    private readonly out: (line: string) => void,
  ) {
    this.readyLine = new Promise((r) => (this.resolveReady = r));
  }

  start(): void {
    this.startedAt = Date.now();
    const child = spawn(process.execPath, [this.spec.entry], {
      env: { ...process.env, ...this.spec.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        if (this.spec.ready.test(line)) this.resolveReady(line);
        this.out(`[${this.spec.name}] ${line}`);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, signal) => {
      this.child = null;
      if (this.stopping) return;
      if (Date.now() - this.startedAt > 60_000) this.restarts = 0;
      const delay = Math.min(500 * 2 ** this.restarts++, 30_000);
      this.out(`[${this.spec.name}] exited (${code ?? signal}); restarting in ${delay} ms`);
      setTimeout(() => !this.stopping && this.start(), delay).unref();
    });
  }

  /**
   * Marks the process as stopping without signalling it. Ctrl-C reaches the whole process group,
   * so children may exit on their own first; that must not look like a crash to restart.
   */
  markStopping(): void {
    this.stopping = true;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** SIGTERM, then SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 35_000): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }
}
