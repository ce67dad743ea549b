/** `redis-server` is not installed (or could not be installed); the message says how to install it. */
export class RedisServerNotFoundError extends Error {
  override readonly name = 'RedisServerNotFoundError';
}

/**
 * A child server (redis-server, the PGlite server) did not become ready: it exited, or did
 * not answer in time. `output` holds the tail of what it printed, also quoted in the message.
 */
export class ProcessStartError extends Error {
  override readonly name = 'ProcessStartError';

  constructor(
    readonly what: string,
    readonly reason: string,
    readonly output: string,
    readonly exitCode: number | null = null,
  ) {
    super(
      `${what} did not start: ${reason}${output.trim() ? `\n--- last output of ${what} ---\n${output.trimEnd()}` : ''}`,
    );
  }
}

/** Another live process holds the lock of a PGlite data directory (two PGlite instances on one directory corrupt it). */
export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';

  constructor(
    readonly dataDir: string,
    readonly pid: number,
    /** The URL the holder serves the database on, when the holder is a PGlite server that is listening. */
    readonly url: string | undefined,
  ) {
    super(
      `the PGlite data directory ${dataDir} is in use by process ${pid}` +
        (url ? ` (serving ${url}): connect to that server instead` : ': stop that process first') +
        ', since two PGlite instances on one directory would corrupt it',
    );
  }
}
