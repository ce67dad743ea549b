import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ApiKeyRepository, createPool, migrate, type KeyLimits, type Pool } from '@llmq/db';
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
  /** Simulator processes, each a backend `sim-<n>` (SIM_NAME too). @defaultValue 1 */
  simulators?: number;
  /** Extra environment per simulator, by index. */
  simulatorEnvs?: Record<string, string>[];
  /**
   * The providers document, from the simulators' base URLs (…/v1). Default: every simulator
   * serves `sim-small` and `sim-large`, with fast timeouts fit for tests.
   */
  providers?: (baseUrls: string[]) => object;
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
  /** The first simulator (most tests need one). */
  simulator!: ServiceProcess;
  simulators: ServiceProcess[] = [];
  simulatorUrls: string[] = [];
  api!: ServiceProcess;
  workers: ServiceProcess[] = [];
  /** API processes started by startExtraApi. */
  extraApis: ServiceProcess[] = [];
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
    this.simulators = await Promise.all(
      Array.from({ length: this.options.simulators ?? 1 }, (_, i) =>
        spawnService({
          name: `sim-${i + 1}`,
          command: process.execPath,
          args: [entry('llm-simulator')],
          env: {
            SIM_PORT: '0',
            SIM_NAME: `sim-${i + 1}`,
            SIM_TTFT_MS: '20',
            SIM_TOKEN_MS: '5',
            ...this.options.simulatorEnv,
            ...this.options.simulatorEnvs?.[i],
          },
          ready: /listening on (http:\/\/\S+)/,
        }),
      ),
    );
    this.simulator = this.simulators[0]!;
    this.simulatorUrls = this.simulators.map((s) => /listening on (http:\/\/\S+)/.exec(s.readyLine)![1]!);
    this.simulatorUrl = this.simulatorUrls[0]!;
    const baseUrls = this.simulatorUrls.map((u) => `${u}/v1`);
    this.writeProviders((this.options.providers ?? defaultProviders)(baseUrls));
    await Promise.all([
      this.startApi(),
      ...Array.from({ length: this.options.workers ?? 1 }, () => this.startWorker()),
    ]);
    return this;
  }

  /** The providers file API and workers read (rewrite it with writeProviders; they reload it). */
  get providersFile(): string {
    return join(this.tmp, 'providers.json');
  }

  writeProviders(document: object): void {
    // Write then rename, so a reader never sees half a file.
    const temp = `${this.providersFile}.${process.pid}.tmp`;
    writeFileSync(temp, JSON.stringify(document, null, 2));
    renameSync(temp, this.providersFile);
  }

  private commonEnv(): Record<string, string> {
    return {
      PROVIDERS_FILE: this.providersFile,
      // The semantic cache's embeddings come from the first simulator.
      EMBEDDINGS_BASE_URL: `${this.simulatorUrl}/v1`,
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
      env: this.apiEnv(extra),
      ready: /listening on (http:\/\/\S+)/,
    });
    this.apiUrl = /listening on (http:\/\/\S+)/.exec(this.api.readyLine)![1]!;
    return this.api;
  }

  private apiEnv(extra: Record<string, string>): Record<string, string> {
    // A loaded CI machine can stall a healthy Redis past the default 1 s command timeout.
    return {
      ...this.commonEnv(),
      PORT: '0',
      DB_POOL_MAX: '4',
      REDIS_COMMAND_TIMEOUT_MS: '5000',
      // Tests submit in bursts: keys get generous defaults; tests of limits set them per key.
      RATE_LIMIT_REQUESTS_PER_MINUTE: '1000000',
      RATE_LIMIT_TOKENS_PER_MINUTE: '1000000000',
      TENANT_MAX_ACTIVE_JOBS: '100000',
      ...this.options.apiEnv,
      ...extra,
    };
  }

  async startWorker(extra: Record<string, string> = {}): Promise<ServiceProcess> {
    const worker = await spawnService({
      name: `worker-${++this.workerSeq}`,
      command: process.execPath,
      args: [entry('worker')],
      env: {
        ...this.commonEnv(),
        HEALTH_CHECK_INTERVAL_MS: '500',
        DB_POOL_MAX: '4',
        LOCK_DURATION_MS: '4000',
        STALLED_INTERVAL_MS: '1000',
        RECONCILE_INTERVAL_MS: '1000',
        RECONCILE_GRACE_MS: '1000',
        DRAIN_TIMEOUT_MS: '15000',
        // Several workers share this machine: each metrics server takes a free port.
        METRICS_PORT: '0',
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

  /** A new API key of the tenant, with its own limits where given (the rest default). */
  async createKey(tenant: string, limits: Partial<KeyLimits> = {}): Promise<string> {
    return (await new ApiKeyRepository(this.pool).create(tenant, null, limits)).key;
  }

  /** Starts one more API process (same settings, plus `extra`); it is stopped with the stack. */
  async startExtraApi(extra: Record<string, string> = {}): Promise<{ url: string; process: ServiceProcess }> {
    const process = await spawnService({
      name: `api-${this.extraApis.length + 2}`,
      command: globalThis.process.execPath,
      args: [entry('api')],
      env: this.apiEnv(extra),
      ready: /listening on (http:\/\/\S+)/,
    });
    this.extraApis.push(process);
    return { url: /listening on (http:\/\/\S+)/.exec(process.readyLine)![1]!, process };
  }

  /** fetch against the API with a key. */
  request(path: string, key: string | null, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (key !== null) headers.set('authorization', `Bearer ${key}`);
    // JSON by default; FormData and other bodies bring their own type.
    if (typeof init.body === 'string' && !headers.has('content-type')) {
      headers.set('content-type', 'application/json');
    }
    return fetch(`${this.apiUrl}${path}`, { ...init, headers });
  }

  /** Submits a generation request; returns the answer and its parsed body. */
  async submit(
    key: string,
    body: object,
    headers: Record<string, string> = {},
  ): Promise<{ res: Response; body: SubmitBody }> {
    const res = await this.request('/api/generate', key, {
      method: 'POST',
      body: JSON.stringify(body),
      headers,
    });
    return { res, body: (await res.json()) as SubmitBody };
  }

  /** Polls a job until its status is one of `statuses` (default: any terminal one). */
  waitForJob(
    key: string,
    jobId: string,
    statuses: string[] = ['completed', 'failed', 'cancelled'],
    timeoutMs = 30_000,
  ): Promise<PolledJob> {
    return eventually(
      async () => {
        const job = (await (await this.request(`/api/jobs/${jobId}`, key)).json()) as PolledJob;
        return statuses.includes(job.status) ? job : undefined;
      },
      `job ${jobId} reached ${statuses.join(' or ')}`,
      timeoutMs,
    );
  }

  async simulatorStats(index = 0): Promise<{
    requests: { chat: number; chatStream: number; embeddings: number; models: number };
    completed: number;
    aborted: number;
    rejected: number;
    inFlight: number;
    /** Completion tokens the simulator wrote. */
    tokens: number;
    faults: { status: number; hang: number; cut: number; trickle: number };
  }> {
    return (await fetch(`${this.simulatorUrls[index]}/stats`)).json() as never;
  }

  async stop(): Promise<void> {
    await Promise.allSettled([
      this.api?.stop(),
      ...this.extraApis.map((a) => a.stop()),
      ...this.workers.map((w) => w.stop('SIGKILL')),
    ]);
    await this.pool?.end().catch(() => undefined);
    await Promise.allSettled([
      ...this.simulators.map((s) => s.stop()),
      this.pglite?.stop(),
      this.redis?.stop(),
    ]);
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** Every simulator serves sim-small and sim-large; timeouts short enough for tests to see them. */
export function defaultProviders(baseUrls: string[]): object {
  return {
    backends: baseUrls.map((baseUrl, i) => ({
      id: `sim-${i + 1}`,
      kind: 'openai',
      baseUrl,
      models: ['sim-small', 'sim-large'],
      timeouts: { connectMs: 2000, firstTokenMs: 10_000, idleMs: 10_000, totalMs: 60_000 },
      price: { inputPerMillion: 0.5, outputPerMillion: 1.5 },
    })),
  };
}

/** The body of a submit answer (202, or a problem). */
export interface SubmitBody {
  jobId: string;
  status: string;
  pollUrl: string;
  streamUrl: string;
  code?: string;
  [field: string]: unknown;
}

/** A job as `GET /api/jobs/:id` returns it. */
export interface PolledJob {
  jobId: string;
  status: string;
  model: string;
  attempts: number;
  result: string | null;
  finishReason: string | null;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
  servedModel: string | null;
  costUsd: number | null;
  error: { code: string; message: string; retryable?: boolean; status?: number } | null;
  metadata: Record<string, string> | null;
}

/**
 * Starts a stack before the file's tests and stops it after; creates one key per tenant.
 * `keys` is filled in by the time the tests run.
 */
export function useStack(
  options: StackOptions = {},
  tenants: string[] = ['acme'],
): { stack: TestStack; keys: Record<string, string> } {
  const stack = new TestStack(options);
  const keys: Record<string, string> = {};
  beforeAll(async () => {
    await stack.start();
    for (const tenant of tenants) keys[tenant] = await stack.createKey(tenant);
  }, 90_000);
  afterAll(() => stack.stop());
  return { stack, keys };
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
