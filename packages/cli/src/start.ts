import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiKeyRepository, createPool, migrate } from '@llmq/db';
import {
  freePort,
  pgliteUrl,
  redisAnswers,
  startPgliteServer,
  startRedisServer,
  type ServerProcess,
} from '@llmq/embedded';
import { appEntry, stateDir } from './paths';
import { readEnvFile, removeStackFile, writeStackFile } from './stack-file';
import { Managed } from './supervisor';

type Stoppable = { stop(): Promise<void> };

const log = (line: string) => process.stdout.write(`${line}\n`);

async function portIsFree(port: number): Promise<boolean> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * `npm start`: the whole product on one machine. Redis (spawned with AOF under .llmq/redis
 * unless REDIS_URL answers), PGlite with pgvector (under .llmq/pgdata unless DATABASE_URL is set),
 * the simulator as the provider, the API and workers, restarted if they crash. Ctrl-C stops all.
 */
export async function startCommand(env: NodeJS.ProcessEnv): Promise<void> {
  const state = stateDir(env);
  mkdirSync(state, { recursive: true, mode: 0o700 });
  const owned: Stoppable[] = [];

  let redisUrl = env.REDIS_URL;
  if (redisUrl && (await redisAnswers(redisUrl, 1000))) {
    log(`using Redis at ${redactUrl(redisUrl)}`);
  } else {
    if (redisUrl)
      log(`REDIS_URL ${redactUrl(redisUrl)} does not answer; starting an embedded redis-server instead`);
    const port = await freePort();
    const dataDir = join(state, 'redis');
    owned.push(await keepAlive('redis-server', () => startRedisServer({ port, dataDir })));
    redisUrl = `redis://127.0.0.1:${port}`;
    log(`started redis-server (AOF in ${dataDir}) at ${redisUrl}`);
  }

  let databaseUrl = env.DATABASE_URL;
  if (databaseUrl) {
    log(`using Postgres at ${redactUrl(databaseUrl)}`);
  } else {
    const port = await freePort();
    const dataDir = join(state, 'pgdata');
    owned.push(await keepAlive('pglite', () => startPgliteServer({ dataDir, port })));
    databaseUrl = pgliteUrl('127.0.0.1', port);
    log(`started PGlite + pgvector (data in ${dataDir}) at ${databaseUrl}`);
  }

  const pool = createPool({ connectionString: databaseUrl, max: 2, applicationName: 'llmq-start' });
  await migrate(pool);
  const apiKey = await devKey(pool, join(state, 'dev.env'));
  await pool.end();

  // Two simulator instances as two backends, so routing and failover are there to see.
  const simPorts = [await freePort(), await freePort()];
  const providersFile = env.PROVIDERS_FILE ?? join(state, 'providers.json');
  if (!env.PROVIDERS_FILE) writeDevProviders(providersFile, simPorts);
  log(`providers: ${providersFile}${env.PROVIDERS_FILE ? '' : ' (generated: the simulators)'}`);
  const wanted = Number(env.PORT ?? 3000);
  const apiPort = (await portIsFree(wanted)) ? wanted : await freePort();
  if (apiPort !== wanted) log(`port ${wanted} is busy; the API uses ${apiPort}`);
  const common = {
    REDIS_URL: redisUrl,
    DATABASE_URL: databaseUrl,
    PROVIDERS_FILE: providersFile,
    EMBEDDINGS_BASE_URL: env.EMBEDDINGS_BASE_URL ?? `http://127.0.0.1:${simPorts[0]}/v1`,
    LOG_LEVEL: env.LOG_LEVEL ?? 'info',
  };
  const simulators = simPorts.map(
    (port, i) =>
      new Managed(
        {
          name: `sim-${i + 1}`,
          entry: appEntry('llm-simulator'),
          env: { SIM_PORT: String(port), SIM_NAME: `sim-${i + 1}` },
          ready: /listening on/,
        },
        log,
      ),
  );
  const api = new Managed(
    { name: 'api', entry: appEntry('api'), env: { ...common, PORT: String(apiPort) }, ready: /listening on/ },
    log,
  );
  const workerCount = Math.max(1, Number(env.LLMQ_WORKERS ?? 2));
  const workers = Array.from(
    { length: workerCount },
    (_, i) =>
      new Managed(
        {
          name: `worker-${i + 1}`,
          entry: appEntry('worker'),
          // Several workers on one machine: each metrics server takes a free port (printed).
          env: { ...common, METRICS_PORT: '0' },
          ready: /llmq-worker ready/,
        },
        log,
      ),
  );
  const children = [...simulators, api, ...workers];
  for (const c of children) c.start();
  await Promise.all(children.map((c) => c.readyLine));

  const apiUrl = `http://127.0.0.1:${apiPort}`;
  writeFileSync(join(state, 'dev.env'), `LLMQ_API_URL=${apiUrl}\nLLMQ_API_KEY=${apiKey}\n`, { mode: 0o600 });
  writeStackFile(state, { pid: process.pid, databaseUrl, redisUrl, apiUrl });
  log('');
  log(
    `llmq is running: ${apiUrl}  (${workerCount} worker${workerCount > 1 ? 's' : ''}, two simulators as the providers)`,
  );
  log(`development API key: ${apiKey}`);
  log(`(both saved in ${join(state, 'dev.env')})`);
  log('');
  log(`  curl -s -X POST ${apiUrl}/api/generate -H "Authorization: Bearer ${apiKey}" \\`);
  log(`       -H "Content-Type: application/json" -d '{"prompt":"Hello, llmq"}'`);
  log(`  curl -N ${apiUrl}/api/jobs/<jobId>/stream -H "Authorization: Bearer ${apiKey}"`);
  log('');
  log('Ctrl-C stops everything.');

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = async () => {
      if (stopping) return;
      stopping = true;
      for (const c of children) c.markStopping();
      log('stopping: API, then workers (draining), then the simulator and the data stores');
      await api.stop();
      await Promise.all(workers.map((w) => w.stop()));
      await Promise.all(simulators.map((s) => s.stop()));
      for (const o of owned.reverse()) await o.stop().catch(() => undefined);
      removeStackFile(state);
      log('stopped');
      resolve();
    };
    process.on('SIGINT', () => void stop());
    process.on('SIGTERM', () => void stop());
  });
}

/** The embedded default providers file: both simulators serve both models; small falls back to large. */
function writeDevProviders(path: string, ports: number[]): void {
  const document = {
    backends: ports.map((port, i) => ({
      id: `sim-${i + 1}`,
      kind: 'openai',
      baseUrl: `http://127.0.0.1:${port}/v1`,
      models: ['sim-small', 'sim-large'],
      price: { inputPerMillion: 0.15, outputPerMillion: 0.6 },
    })),
    models: [
      { name: 'sim-small', aliases: ['small'], fallback: ['sim-large'] },
      { name: 'sim-large', aliases: ['large'] },
    ],
  };
  writeFileSync(path, JSON.stringify(document, null, 2) + '\n');
}

/**
 * Starts a data store and starts it again (same port, same data) whenever it exits on its own;
 * API and workers reconnect by themselves. The PGlite server exits on purpose when PGlite fails
 * inside a query (see packages/embedded), so this is its recovery path.
 */
async function keepAlive(name: string, start: () => Promise<ServerProcess>): Promise<Stoppable> {
  let stopping = false;
  let current = await start();
  const watch = (proc: ServerProcess): void => {
    void proc.exited.then(async (exit) => {
      if (stopping) return;
      log(`[${name}] exited (${exit.code ?? exit.signal}); restarting`);
      for (let attempt = 0; !stopping; attempt++) {
        try {
          current = await start();
          watch(current);
          log(`[${name}] restarted`);
          return;
        } catch (error) {
          log(`[${name}] restart failed: ${error instanceof Error ? error.message : String(error)}`);
          await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** attempt, 10_000)));
        }
      }
    });
  };
  watch(current);
  return {
    stop: async () => {
      stopping = true;
      await current.stop();
    },
  };
}

/** Reuses the dev key from an earlier run if it still works, else creates one for tenant "dev". */
async function devKey(pool: ReturnType<typeof createPool>, envFile: string): Promise<string> {
  const keys = new ApiKeyRepository(pool);
  const earlier = readEnvFile(envFile).LLMQ_API_KEY;
  if (earlier && (await keys.findActive(earlier))) return earlier;
  return (await keys.create('dev', 'development key')).key;
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
