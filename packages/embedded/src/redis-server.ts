/**
 * The embedded Redis: a `redis-server` child process with AOF on and `noeviction`, the
 * settings BullMQ needs to keep accepted jobs (see DESIGN.md, "Two Redis roles").
 */
import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import {
  delay,
  exitOf,
  hasExited,
  OutputTail,
  serverProcess,
  terminateWithParent,
  type ServerProcess,
} from './child-process';
import { ProcessStartError, RedisServerNotFoundError } from './errors';
import { dialHost, freePort, hostForUrl } from './ports';
import { parseRedisUrl, redisCommands, RespError, type RedisTarget, type RespValue } from './resp';

const FALLBACK_DIRS = ['/usr/local/bin', '/usr/bin', '/usr/sbin', '/usr/local/sbin'];

export interface LocateRedisServerOptions {
  /**
   * When `redis-server` is missing and this process runs as root, install it with
   * `apt-get` (output shown on this terminal). @defaultValue `false`
   */
  installIfMissing?: boolean;
  /** Directories to look in. @defaultValue the directories on `PATH`, then /usr/local/bin, /usr/bin, /usr/sbin */
  searchDirs?: readonly string[];
}

/**
 * Finds the `redis-server` executable, installing it with apt-get when allowed and
 * possible. Throws {@link RedisServerNotFoundError} saying what to install otherwise.
 */
export async function locateRedisServer(options: LocateRedisServerOptions = {}): Promise<string> {
  // PATH is how any program finds executables, not llmq configuration.
  const searchDirs = options.searchDirs ?? [
    ...(process.env.PATH ?? '').split(path.delimiter),
    ...FALLBACK_DIRS,
  ];
  const found = findExecutable('redis-server', searchDirs);
  if (found) return found;

  const isRoot = process.getuid?.() === 0;
  if (!options.installIfMissing || !isRoot) {
    throw new RedisServerNotFoundError(notFoundMessage(searchDirs, isRoot));
  }
  await installRedisWithApt();
  const installed = findExecutable('redis-server', [...searchDirs, ...FALLBACK_DIRS]);
  if (!installed) {
    throw new RedisServerNotFoundError(
      'apt-get installed redis-server but no redis-server executable was found afterwards',
    );
  }
  return installed;
}

function findExecutable(name: string, dirs: readonly string[]): string | undefined {
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function notFoundMessage(searchDirs: readonly string[], isRoot: boolean): string {
  const sudo = isRoot ? '' : 'sudo ';
  return (
    `redis-server was not found (looked in ${searchDirs.filter(Boolean).join(', ')}). Install Redis 7 or newer: ` +
    `on Debian/Ubuntu \`${sudo}apt-get install redis-server\`, on Fedora/RHEL \`${sudo}dnf install redis\`, ` +
    `on Alpine \`${sudo}apk add redis\`, on macOS \`brew install redis\`; or point llmq at a running Redis (REDIS_URL).`
  );
}

async function installRedisWithApt(): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const run = (args: string[]) =>
    new Promise<number | null>((resolve, reject) => {
      const child = spawn('apt-get', args, { stdio: 'inherit', env });
      child.once('error', reject);
      child.once('exit', (code) => resolve(code));
    });
  try {
    const updated = await run(['update']);
    if (updated !== 0) throw new Error(`apt-get update exited with ${String(updated)}`);
    const installed = await run(['install', '-y', '--no-install-recommends', 'redis-server']);
    if (installed !== 0) throw new Error(`apt-get install exited with ${String(installed)}`);
  } catch (error) {
    throw new RedisServerNotFoundError(
      `redis-server is missing and installing it with apt-get failed (${(error as Error).message}). ` +
        "Install it by hand: `apt-get install redis-server` (Debian/Ubuntu) or your distribution's redis package.",
    );
  }
}

export interface StartRedisServerOptions {
  /** Directory for the AOF files; created if missing. Reuse it to keep the data across restarts. */
  dataDir: string;
  /** @defaultValue a free port (see {@link freePort}) */
  port?: number;
  /** Interface to bind. @defaultValue `'127.0.0.1'` */
  host?: string;
  /** AOF persistence with `appendfsync everysec` (loses at most about a second on a crash). @defaultValue `true` */
  appendOnly?: boolean;
  /** BullMQ needs `noeviction`; a cache-only Redis may use an LRU policy. @defaultValue `'noeviction'` */
  maxmemoryPolicy?: string;
  /** Sets `requirepass`; the handle's `url` then carries it. @defaultValue none (no auth) */
  password?: string;
  /** More `--name value` arguments for redis-server, appended last so they win. @defaultValue `[]` */
  extraArgs?: readonly string[];
  /** The redis-server executable. @defaultValue found by {@link locateRedisServer} (without installing) */
  binary?: string;
  /** How long to wait for the server to answer. @defaultValue `10_000` */
  startTimeoutMs?: number;
  /** How long {@link ServerProcess.stop} waits after SIGTERM before SIGKILL. @defaultValue `10_000` */
  stopTimeoutMs?: number;
}

export interface RedisServerHandle extends ServerProcess {
  readonly dataDir: string;
}

/**
 * Spawns `redis-server` in the foreground as a child of this process (it gets SIGTERM if
 * this process exits first) and resolves once it answers and has loaded its AOF.
 * Throws {@link ProcessStartError}, quoting Redis' output, if it exits or does not answer.
 */
export async function startRedisServer(options: StartRedisServerOptions): Promise<RedisServerHandle> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? (await freePort(host));
  const dataDir = path.resolve(options.dataDir);
  const binary = options.binary ?? (await locateRedisServer());
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  await mkdir(dataDir, { recursive: true });

  const settings: [string, string][] = [
    ['port', String(port)],
    ['bind', host],
    ['dir', dataDir],
    ['appendonly', options.appendOnly === false ? 'no' : 'yes'],
    ['appendfsync', 'everysec'],
    ['save', ''], // no RDB snapshots: the AOF is the persistence
    ['maxmemory-policy', options.maxmemoryPolicy ?? 'noeviction'],
    ['daemonize', 'no'],
    ['protected-mode', 'no'],
    ...(options.password === undefined ? [] : [['requirepass', options.password] as [string, string]]),
  ];
  const args = [...settings.flatMap(([name, value]) => [`--${name}`, value]), ...(options.extraArgs ?? [])];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const tail = new OutputTail();
  child.stdout?.on('data', (chunk: Buffer) => tail.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => tail.push(chunk));
  const exited = exitOf(child);
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  terminateWithParent(child);

  const target: RedisTarget = {
    host: dialHost(host),
    port,
    tls: false,
    username: undefined,
    password: options.password,
  };
  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (spawnError || hasExited(child)) {
      const exit = await exited;
      await delay(50); // let the last output arrive
      throw new ProcessStartError(
        'redis-server',
        spawnError
          ? `could not run ${binary}: ${spawnError.message}`
          : `it exited (code ${String(exit.code)}, signal ${String(exit.signal)})`,
        tail.toString(),
        exit.code,
      );
    }
    if (await isOurRedisReady(target, child.pid)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new ProcessStartError(
        'redis-server',
        `it did not answer on ${host}:${port} within ${startTimeoutMs} ms`,
        tail.toString(),
      );
    }
    await delay(25);
  }

  const handle = serverProcess({
    child,
    exited,
    url: `redis://${options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`}${hostForUrl(host)}:${port}`,
    port,
    tail,
    stopTimeoutMs: options.stopTimeoutMs ?? 10_000,
  });
  return { ...handle, dataDir };
}

/**
 * True once the server on the port is the one we spawned (another Redis may already hold
 * the port, and answer, while ours fails to bind) and has finished loading its AOF.
 */
async function isOurRedisReady(target: RedisTarget, pid: number | undefined): Promise<boolean> {
  const auth = target.password === undefined ? [] : [['AUTH', target.password]];
  let replies: RespValue[];
  try {
    replies = await redisCommands(target, [...auth, ['INFO', 'server', 'persistence']], 1_000);
  } catch {
    return false;
  }
  const info = replies[replies.length - 1];
  // a password set through extraArgs: it answers, and cannot be asked who it is
  if (info instanceof RespError && info.message.startsWith('NOAUTH')) return true;
  if (typeof info !== 'string') return false;
  return new RegExp(`^process_id:${String(pid)}\\r?$`, 'm').test(info) && /^loading:0\r?$/m.test(info);
}

/**
 * True if a Redis at `url` answers PING with PONG within `timeoutMs` (authenticating with
 * the URL's credentials if it has any). Used to decide whether to spawn an embedded Redis.
 * Throws only if `url` is not a redis:// or rediss:// URL.
 *
 * @param timeoutMs - @defaultValue `1_000`
 */
export async function redisAnswers(url: string, timeoutMs = 1_000): Promise<boolean> {
  const target = parseRedisUrl(url);
  const commands: string[][] = [];
  if (target.password !== undefined) {
    commands.push(target.username ? ['AUTH', target.username, target.password] : ['AUTH', target.password]);
  }
  commands.push(['PING']);
  try {
    const replies = await redisCommands(target, commands, timeoutMs);
    const pong = replies[replies.length - 1];
    return pong === 'PONG' && !(replies[0] instanceof RespError);
  } catch {
    return false;
  }
}
