import { join } from 'node:path';
import {
  ApiKeyRepository,
  KEY_LIMIT_MAXIMA,
  MAX_ACTIVE_JOBS_MAXIMUM,
  MAX_LIST_LIMIT,
  createPool,
  isApiKeyId,
  migrate,
  type ApiKeyRecord,
  type KeyLimits,
  type TenantLimits,
} from '@llmq/db';
import { startPgliteServer } from '@llmq/embedded';
import { markKeyRevoked } from '@llmq/rate-limit';
import { Redis } from 'ioredis';
import { readLiveStack } from './stack-file';

/** A mistake in the command line: the CLI prints it with the usage and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

const out = (line = '') => process.stdout.write(`${line}\n`);

/**
 * Runs `fn` against the configured database: DATABASE_URL, else the running embedded stack's,
 * else the embedded data directory opened for the duration of the command.
 */
export async function withDatabase<T>(
  env: NodeJS.ProcessEnv,
  state: string,
  fn: (keys: ApiKeyRepository) => Promise<T>,
): Promise<T> {
  let url = env.DATABASE_URL ?? readLiveStack(state)?.databaseUrl;
  let server: Awaited<ReturnType<typeof startPgliteServer>> | null = null;
  if (!url) {
    server = await startPgliteServer({ dataDir: join(state, 'pgdata'), port: 0 });
    url = server.url;
  }
  const pool = createPool({ connectionString: url, max: 1, applicationName: 'llmq-cli' });
  try {
    await migrate(pool);
    return await fn(new ApiKeyRepository(pool));
  } finally {
    await pool.end();
    await server?.stop();
  }
}

/** The limit flags shared by `keys create` and `keys limits`, with the field each one sets. */
export const LIMIT_FLAGS = {
  rpm: 'requestsPerMinute',
  'request-burst': 'requestBurst',
  tpm: 'tokensPerMinute',
  'token-burst': 'tokenBurst',
  'daily-budget': 'dailyBudgetUsd',
  'monthly-budget': 'monthlyBudgetUsd',
} as const satisfies Record<string, keyof KeyLimits>;
export type LimitFlag = keyof typeof LIMIT_FLAGS;

const WHOLE = /^[0-9]{1,10}$/;
const USD = /^[0-9]{1,8}(\.[0-9]{1,6})?$/;

/**
 * Reads `--rpm 600 --daily-budget 12.5 …` into limits. `default` sets a limit back to the
 * configured default (null); 0 means no limit.
 */
export function parseLimitFlags(values: Partial<Record<LimitFlag, string>>): Partial<KeyLimits> {
  const limits: Partial<KeyLimits> = {};
  for (const [flag, field] of Object.entries(LIMIT_FLAGS) as [LimitFlag, keyof KeyLimits][]) {
    const raw = values[flag];
    if (raw === undefined) continue;
    if (raw === 'default') {
      limits[field] = null;
      continue;
    }
    const max = KEY_LIMIT_MAXIMA[field];
    const budget = field === 'dailyBudgetUsd' || field === 'monthlyBudgetUsd';
    const ok = (budget ? USD : WHOLE).test(raw) && Number(raw) <= max;
    if (!ok) {
      throw new UsageError(
        budget
          ? `--${flag} is a USD amount from 0 to ${max} with at most 6 decimals, or "default" (got "${raw}")`
          : `--${flag} is a whole number from 0 to ${max}, or "default" (got "${raw}")`,
      );
    }
    limits[field] = Number(raw);
  }
  return limits;
}

export function parseMaxActiveJobs(raw: string): number | null {
  if (raw === 'default') return null;
  if (!WHOLE.test(raw) || Number(raw) > MAX_ACTIVE_JOBS_MAXIMUM) {
    throw new UsageError(
      `--max-active-jobs is a whole number from 0 to ${MAX_ACTIVE_JOBS_MAXIMUM}, or "default" (got "${raw}")`,
    );
  }
  return Number(raw);
}

export function checkKeyId(id: string | undefined, command: string): string {
  if (id === undefined) throw new UsageError(`${command} needs the key's id (see llmq keys list)`);
  if (!isApiKeyId(id)) throw new UsageError(`"${id}" is not a key id (a UUID, see llmq keys list)`);
  return id;
}

const limitText = (value: number | null, usd = false) =>
  value === null ? 'default' : value === 0 ? 'unlimited' : usd ? `$${value}` : String(value);
const time = (d: Date | null) => (d ? d.toISOString().slice(0, 19).replace('T', ' ') + 'Z' : '-');

function describeLimits(limits: KeyLimits): string {
  return [
    `requests/min ${limitText(limits.requestsPerMinute)} (burst ${limitText(limits.requestBurst)})`,
    `tokens/min ${limitText(limits.tokensPerMinute)} (burst ${limitText(limits.tokenBurst)})`,
    `budget/day ${limitText(limits.dailyBudgetUsd, true)}`,
    `budget/month ${limitText(limits.monthlyBudgetUsd, true)}`,
  ].join(', ');
}

/** Keys as an aligned text table. */
export function formatKeyTable(records: ApiKeyRecord[]): string {
  const header = [
    'ID',
    'TENANT',
    'NAME',
    'PREFIX',
    'CREATED',
    'REVOKED',
    'RPM',
    'REQ BURST',
    'TPM',
    'TOK BURST',
    'DAILY',
    'MONTHLY',
  ];
  const rows = records.map((r) => [
    r.id,
    r.tenantId,
    r.name ?? '-',
    `${r.keyPrefix}…`,
    time(r.createdAt),
    time(r.revokedAt),
    limitText(r.limits.requestsPerMinute),
    limitText(r.limits.requestBurst),
    limitText(r.limits.tokensPerMinute),
    limitText(r.limits.tokenBurst),
    limitText(r.limits.dailyBudgetUsd, true),
    limitText(r.limits.monthlyBudgetUsd, true),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  return [header, ...rows]
    .map((cells) =>
      cells
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export async function createKeyCommand(
  env: NodeJS.ProcessEnv,
  state: string,
  tenant: string,
  name: string | null,
  limits: Partial<KeyLimits> = {},
) {
  const { key, record } = await withDatabase(env, state, (keys) => keys.create(tenant, name, limits));
  out(`created API key ${record.keyPrefix}… (id ${record.id}) for tenant "${record.tenantId}"`);
  out(`limits: ${describeLimits(record.limits)}`);
  out(`store it now; llmq keeps only its hash:`);
  // Last, alone on its line: scripts take the key from here.
  out(key);
}

export async function listKeysCommand(
  env: NodeJS.ProcessEnv,
  state: string,
  options: { tenant?: string; all: boolean; json: boolean },
) {
  const records = await withDatabase(env, state, async (keys) => {
    const all: ApiKeyRecord[] = [];
    for (;;) {
      const page = await keys.list({
        ...(options.tenant !== undefined ? { tenantId: options.tenant } : {}),
        includeRevoked: options.all,
        limit: MAX_LIST_LIMIT,
        ...(all.length ? { after: all.at(-1)!.id } : {}),
      });
      all.push(...page);
      if (page.length < MAX_LIST_LIMIT) return all;
    }
  });
  if (options.json) {
    // The admin API's view of a key (GET /admin/keys).
    const view = records.map((r) => ({
      id: r.id,
      tenant: r.tenantId,
      name: r.name,
      keyPrefix: r.keyPrefix,
      createdAt: r.createdAt.toISOString(),
      revokedAt: r.revokedAt?.toISOString() ?? null,
      limits: r.limits,
    }));
    out(JSON.stringify(view, null, 2));
    return;
  }
  if (records.length === 0) {
    const what = options.all ? 'keys' : 'active keys';
    out(options.tenant ? `no ${what} for tenant "${options.tenant}"` : `no ${what}`);
    return;
  }
  out(formatKeyTable(records));
  out();
  out(
    `${records.length} key${records.length === 1 ? '' : 's'}; limits: "default" = the server's configured default`,
  );
}

/** Changes a key's limits (and name); returns the exit code. */
export async function keyLimitsCommand(
  env: NodeJS.ProcessEnv,
  state: string,
  id: string,
  changes: { name?: string | null; limits: Partial<KeyLimits> },
): Promise<number> {
  const record = await withDatabase(env, state, (keys) => keys.update(id, changes));
  if (!record) {
    process.stderr.write(`llmq: no API key with id ${id}\n`);
    return 1;
  }
  out(`API key ${record.keyPrefix}… (id ${record.id}) of tenant "${record.tenantId}"`);
  if (record.name !== null) out(`name: ${record.name}`);
  out(`limits: ${describeLimits(record.limits)}`);
  out(`API processes pick the change up within a few seconds (their key cache).`);
  return 0;
}

/**
 * Revokes a key in Postgres, then writes the Redis marker that makes every API process refuse
 * it at once. Returns the exit code.
 */
export async function revokeKeyCommand(env: NodeJS.ProcessEnv, state: string, id: string): Promise<number> {
  const result = await withDatabase(env, state, async (keys) => {
    const before = await keys.get(id);
    return before ? { before, after: (await keys.revoke(id))! } : null;
  });
  if (!result) {
    process.stderr.write(`llmq: no API key with id ${id}\n`);
    return 1;
  }
  const { before, after } = result;
  const label = `API key ${after.keyPrefix}… (id ${after.id}) of tenant "${after.tenantId}"`;
  out(
    before.revokedAt
      ? `${label} was already revoked at ${time(after.revokedAt)}`
      : `revoked ${label} at ${time(after.revokedAt)}`,
  );
  return markRevokedInRedis(env, state, after);
}

async function markRevokedInRedis(env: NodeJS.ProcessEnv, state: string, record: ApiKeyRecord) {
  const prefix = env.LLMQ_PREFIX ?? 'llmq';
  const candidates = [...new Set([env.REDIS_URL, readLiveStack(state)?.redisUrl])].filter(
    (u): u is string => !!u,
  );
  for (const url of candidates) {
    const redis = await connectRedis(url);
    if (!redis) continue;
    try {
      await markKeyRevoked(redis, prefix, record.tenantId, record.id);
    } catch (error) {
      process.stderr.write(
        `llmq: the key is revoked in Postgres, but writing its marker to Redis at ${redactUrl(url)} failed ` +
          `(${error instanceof Error ? error.message : String(error)}); API processes may accept it for a few ` +
          `more seconds. Run the command again to retry.\n`,
      );
      return 1;
    } finally {
      redis.disconnect();
    }
    out(`marked revoked in Redis at ${redactUrl(url)}: every API process refuses the key at once`);
    return 0;
  }
  out(
    candidates.length
      ? `Redis (${candidates.map(redactUrl).join(', ')}) does not answer, so no API process is running; nothing else to do`
      : 'no REDIS_URL and no running llmq stack, so no API process is running; nothing else to do',
  );
  return 0;
}

/** An ioredis connection, or null when Redis does not answer within two seconds. */
async function connectRedis(url: string): Promise<Redis | null> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 2000,
    commandTimeout: 2000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectionName: 'llmq-cli',
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    return redis;
  } catch {
    redis.disconnect();
    return null;
  }
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(unparseable URL)';
  }
}

/** Shows, or with `maxActiveJobs` sets, a tenant's own limits. */
export async function tenantLimitsCommand(
  env: NodeJS.ProcessEnv,
  state: string,
  tenant: string,
  maxActiveJobs: number | null | undefined,
) {
  const limits: TenantLimits = await withDatabase(env, state, (keys) =>
    maxActiveJobs === undefined
      ? keys.getTenantLimits(tenant)
      : keys.setTenantLimits(tenant, { maxActiveJobs }),
  );
  out(`tenant "${limits.tenantId}": max active jobs ${limitText(limits.maxActiveJobs)}`);
}
