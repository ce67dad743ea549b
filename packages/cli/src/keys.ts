import { join } from 'node:path';
import { ApiKeyRepository, createPool, migrate } from '@llmq/db';
import { startPgliteServer } from '@llmq/embedded';
import { readLiveStack } from './stack-file';

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

export async function createKeyCommand(
  env: NodeJS.ProcessEnv,
  state: string,
  tenant: string,
  name: string | null,
) {
  const { key, record } = await withDatabase(env, state, (keys) => keys.create(tenant, name));
  process.stdout.write(
    `created API key ${record.keyPrefix}… (id ${record.id}) for tenant "${record.tenantId}"\n`,
  );
  process.stdout.write(`store it now; llmq keeps only its hash:\n`);
  process.stdout.write(`${key}\n`);
}
