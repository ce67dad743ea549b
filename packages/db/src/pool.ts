import { Pool, type PoolClient, type PoolConfig } from 'pg';

export interface PoolOptions {
  connectionString: string;
  /** @defaultValue 10 */
  max?: number;
  /** Server-side statement timeout in ms. @defaultValue 30000 */
  statementTimeoutMs?: number;
  /** How long to wait for a free connection. @defaultValue 5000 */
  connectionTimeoutMs?: number;
  /** Name shown in pg_stat_activity. */
  applicationName?: string;
}

/** A pg pool with timeouts set, so a stuck database fails requests instead of hanging them. */
export function createPool(options: PoolOptions): Pool {
  const config: PoolConfig = {
    connectionString: options.connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    application_name: options.applicationName ?? 'llmq',
  };
  const pool = new Pool(config);
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  return pool;
}

export type { Pool, PoolClient } from 'pg';

/**
 * Runs `fn` in one transaction on a connection of `pool`: committed when it returns, rolled back
 * when it throws. A connection that cannot even roll back is discarded, not given to the next caller.
 */
export async function inTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}
