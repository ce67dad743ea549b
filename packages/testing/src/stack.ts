import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ApiKeyRepository, createPool, migrate, type Pool } from '@llmq/db';
import { freePort, startPgliteServer, startRedisServer } from '@llmq/embedded';
import { spawnService, type ServiceProcess } from './process';

/** The repository root, from src/ (jest) or dist/. */
export const REPO_ROOT = resolve(__dirname, '..', '..', '..');
const entry = (app: string) => join(REPO_ROOT, 'apps', app, 'dist', 'main.js');

type RedisHandle = Awaited<ReturnType<typeof startRedisServer>>;
type PgliteHandle = Awaited<ReturnType<typeof startPgliteServer>>;

export interface StackOptions {
  /** Worker processes to start. @defaultValue 1 */
  workers?: number;
  apiEnv?: Record<string, string>;
  workerEnv?: Record<string, string>;
  simulatorEnv?: Record<string, string>;
  /** Keep Redis data in this directory (so a restart keeps the AOF); a temp dir by default. */
  redisDir?: string;
}

/**
 * A whole llmq on this machine, every part a real process on a free port: Redis (AOF),
 * PGlite with pgvector over the wire protocol, the simulator, the API and workers.
 */
export class TestStack {
  redis!: RedisHandle;
  pglite!: PgliteHandle;
  simulator!: ServiceProcess;
  api!: ServiceProcess;
  workers: ServiceProcess[] = [];
  pool!: Pool;
  apiUrl = '';
  simulatorUrl = '';
  private readonly tmp = mkdtempSync(join(tmpdir(), 'llmq-test-'));
  private redisPort = 0;
  private workerSeq = 0;

  constructor(private readonly options: StackOptions = {}) {}

  get redisUrl(): string {
    return `redis://127.0.0.1:${this.redisPort}`;
  }

  get redisDir(): string {
    return this.options.redisDir ?? join(this.tmp, 'redis');
  }

  async start(): Promise<this> {
    this.redisPort = await freePort();
    const [redis, pglite] = await Promise.all([
      startRedisServer({ port: this.redisPort, dataDir: this.redisDir }),
      startPgliteServer({ dataDir: 'memory', port: await freePort() }),
    ]);
    this.redis = redis;
    this.pglite = pglite;
    this.pool = createPool({ connectionString: pglite.url, max: 4 });
    await migrate(this.pool);
    this.simulator = await spawnService({
      name: 'simulator',
      command: process.execPath,
      args: [entry('llm-simulator')],
      env: { SIM_PORT: '0', SIM_TTFT_MS: '20', SIM_TOKEN_MS: '5', ...this.options.simulatorEnv },
      ready: /listening on (http:\/\/\S+)/,
    });
    this.simulatorUrl = /listening on (http:\/\/\S+)/.exec(this.simulator.readyLine)![1]!;
    await Promise.all([
      this.startApi(),
      ...Array.from({ length: this.options.workers ?? 1 }, () => this.startWorker()),
    ]);
    return this;
  }

  private commonEnv(): Record<string, string> {
    return {
      REDIS_URL: this.redisUrl,
      DATABASE_URL: this.pglite.url,
      LOG_LEVEL: process.env.LLMQ_TEST_LOG_LEVEL ?? 'warn',
    };
  }

  async startApi(extra: Record<string, string> = {}): Promise<ServiceProcess> {
    this.api = await spawnService({
      name: 'api',
      command: process.execPath,
      args: [entry('api')],
      // A loaded CI machine can stall a healthy Redis past the default 1 s command timeout.
      env: {
        ...this.commonEnv(),
        PORT: '0',
        DB_POOL_MAX: '4',
        REDIS_COMMAND_TIMEOUT_MS: '5000',
        ...this.options.apiEnv,
        ...extra,
      },
      ready: /listening on (http:\/\/\S+)/,
    });
    this.apiUrl = /listening on (http:\/\/\S+)/.exec(this.api.readyLine)![1]!;
    return this.api;
  }

  async startWorker(extra: Record<string, string> = {}): Promise<ServiceProcess> {
    const worker = await spawnService({
      name: `worker-${++this.workerSeq}`,
      command: process.execPath,
      args: [entry('worker')],
      env: {
        ...this.commonEnv(),
        PROVIDER_BASE_URL: `${this.simulatorUrl}/v1`,
        DB_POOL_MAX: '4',
        LOCK_DURATION_MS: '4000',
        STALLED_INTERVAL_MS: '1000',
        RECONCILE_INTERVAL_MS: '1000',
        RECONCILE_GRACE_MS: '1000',
        DRAIN_TIMEOUT_MS: '15000',
        ...this.options.workerEnv,
        ...extra,
      },
      ready: /llmq-worker ready/,
    });
    this.workers.push(worker);
    return worker;
  }

  /** Restarts Redis on the same port and data directory (AOF replayed). */
  async restartRedis(): Promise<void> {
    await this.redis.stop();
    this.redis = await startRedisServer({ port: this.redisPort, dataDir: this.redisDir });
  }

  async createKey(tenant: string): Promise<string> {
    return (await new ApiKeyRepository(this.pool).create(tenant)).key;
  }

  /** fetch against the API with a key. */
  request(path: string, key: string | null, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (key !== null) headers.set('authorization', `Bearer ${key}`);
    if (init.body !== undefined && !headers.has('content-type'))
      headers.set('content-type', 'application/json');
    return fetch(`${this.apiUrl}${path}`, { ...init, headers });
  }

  async simulatorStats(): Promise<{
    requests: { chat: number; chatStream: number };
    completed: number;
    aborted: number;
    rejected: number;
    inFlight: number;
    faults: Record<string, number>;
  }> {
    return (await fetch(`${this.simulatorUrl}/stats`)).json() as never;
  }

  async stop(): Promise<void> {
    await Promise.allSettled([this.api?.stop(), ...this.workers.map((w) => w.stop('SIGKILL'))]);
    await this.pool?.end().catch(() => undefined);
    await Promise.allSettled([this.simulator?.stop(), this.pglite?.stop(), this.redis?.stop()]);
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** Polls until `check` returns a value (not undefined/false), or fails with `message`. */
export async function eventually<T>(
  check: () => Promise<T | undefined | false>,
  /** What should have happened; a function to describe the state at the deadline. */
  message: string | (() => string),
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `${typeof message === 'function' ? message() : message} (not true within ${timeoutMs} ms${last ? `; last error: ${String(last)}` : ''})`,
  );
}
