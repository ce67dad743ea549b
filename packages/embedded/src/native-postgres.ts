/**
 * Native PostgreSQL clusters for tests that need what PGlite cannot do: streaming
 * replication (see DESIGN.md, "Real components in tests"). `postgres` runs in the
 * foreground as a child of this process, like redis-server; a replica is made with
 * `pg_basebackup -R` from a running primary.
 *
 * PostgreSQL refuses to run as root. When this process is root, initdb, pg_basebackup and
 * postgres run as the `postgres` OS user (Node's `uid`/`gid` spawn options, so the handle's
 * pid is the postmaster itself, not a `su` wrapper) and the data directories are chowned
 * to it; otherwise they run as this process's user.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import {
  accessSync,
  constants as fsConstants,
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
} from 'node:fs';
import { appendFile, chmod, chown, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  delay,
  exitOf,
  hasExited,
  OutputTail,
  serverProcess,
  stopProcess,
  terminateWithParent,
  type ServerProcess,
} from './child-process';
import { ProcessStartError } from './errors';
import { dialHost, freePort, hostForUrl } from './ports';

/** Where Debian and Ubuntu install PostgreSQL's server binaries (`postgresql-NN`). */
export const DEBIAN_POSTGRES_LIB = '/usr/lib/postgresql';

const REQUIRED_BINARIES = ['initdb', 'postgres', 'pg_basebackup'] as const;

/**
 * Native PostgreSQL cannot be run here: its binaries are missing, or this process is root
 * and there is no `postgres` OS user to run it as. The message says what to install.
 */
export class NativePostgresUnavailableError extends Error {
  override readonly name = 'NativePostgresUnavailableError';
}

function hasBinaries(dir: string): boolean {
  return REQUIRED_BINARIES.every((name) => {
    try {
      accessSync(path.join(dir, name), fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** `/usr/lib/postgresql/NN/bin` directories, newest major version first. */
function debianBinDirs(): string[] {
  let versions: string[];
  try {
    versions = readdirSync(DEBIAN_POSTGRES_LIB).filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  return versions.sort((a, b) => Number(b) - Number(a)).map((v) => path.join(DEBIAN_POSTGRES_LIB, v, 'bin'));
}

/**
 * The directory holding `initdb`, `postgres` and `pg_basebackup`, or `undefined`.
 * Looks at `binDir` only when given; otherwise at `/usr/lib/postgresql/NN/bin` (newest
 * first: Debian keeps them off `PATH`), then the directories on `PATH`.
 */
export function findNativePostgres(binDir?: string): string | undefined {
  if (binDir !== undefined) return hasBinaries(binDir) ? binDir : undefined;
  // PATH is how any program finds executables, not llmq configuration.
  const pathDirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  return [...debianBinDirs(), ...pathDirs].find(hasBinaries);
}

/** {@link findNativePostgres}, throwing {@link NativePostgresUnavailableError} saying what to install. */
export function locateNativePostgres(binDir?: string): string {
  const found = findNativePostgres(binDir);
  if (found) return found;
  const where = binDir ?? `${DEBIAN_POSTGRES_LIB}/NN/bin or PATH`;
  throw new NativePostgresUnavailableError(
    `PostgreSQL server binaries (${REQUIRED_BINARIES.join(', ')}) were not found in ${where}. ` +
      'Install them: on Debian/Ubuntu `apt-get install postgresql-15` (or any version from 12), ' +
      'on Fedora/RHEL `dnf install postgresql-server`, on macOS `brew install postgresql@15`.',
  );
}

/** The OS account the servers run as. */
export interface NativePostgresOsUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

/**
 * The account PostgreSQL runs as when this process is root (the `postgres` user), or
 * `undefined` when this process is not root and the servers run as its own user.
 * Directories holding data directories must be traversable by this account (chown them to it).
 */
export function nativePostgresOsUser(): NativePostgresOsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  const uid = lookup('-u');
  const gid = lookup('-g');
  if (uid.status !== 0 || gid.status !== 0) {
    throw new NativePostgresUnavailableError(
      'PostgreSQL refuses to run as root, and this process is root but there is no `postgres` OS user ' +
        'to run it as. Create one (`useradd --system --user-group postgres`; the postgresql package does) ' +
        'or run as a non-root user.',
    );
  }
  return { name: 'postgres', uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** `name = value` settings for `postgres -c`; booleans become `on`/`off`. */
export type PostgresSettings = Readonly<Record<string, string | number | boolean>>;

export interface StartNativePostgresOptions {
  /**
   * The cluster's directory: `initdb` runs when it is missing or empty; a directory with a
   * cluster (a `PG_VERSION` file) is started as it is, a standby included.
   */
  dataDir: string;
  /** @defaultValue a free port (see {@link freePort}) */
  port?: number;
  /** `listen_addresses`. @defaultValue `'127.0.0.1'` */
  host?: string;
  /** `unix_socket_directories` (created if missing). @defaultValue none: TCP only */
  socketDir?: string;
  /** More settings, applied last so they win (`{ max_connections: 50 }`). @defaultValue `{}` */
  settings?: PostgresSettings;
  /**
   * `false` skips every fsync (`initdb --no-sync`, `fsync = off`): much faster, and a crash
   * of the machine (not of the server) can corrupt the cluster. For tests. @defaultValue `true`
   */
  durable?: boolean;
  /** Directory of the PostgreSQL binaries. @defaultValue found by {@link locateNativePostgres} */
  binDir?: string;
  /** How long to wait for initdb and for the server to accept connections. @defaultValue `60_000` */
  startTimeoutMs?: number;
  /** How long {@link ServerProcess.stop} waits after SIGINT (fast shutdown) before SIGKILL. @defaultValue `15_000` */
  stopTimeoutMs?: number;
}

export interface NativePostgresHandle extends ServerProcess {
  /** The resolved data directory. */
  readonly dataDir: string;
  /** What it was started with, ports and directories resolved: {@link restart} reuses it. */
  readonly options: Readonly<StartNativePostgresOptions> & { readonly port: number; readonly binDir: string };
  /**
   * Stops it if it still runs (fast shutdown), then starts a new server on the same
   * directory and port. This handle stays stopped; use the one returned.
   */
  restart(): Promise<NativePostgresHandle>;
}

/**
 * Starts a native PostgreSQL server (initdb first if `dataDir` is empty) and resolves once
 * it accepts connections: `postmaster.pid` names our process and says `ready` (or
 * `standby`, for a hot standby that reached consistency). The URL is
 * `postgres://postgres@HOST:PORT/postgres` with trust authentication: a cluster for tests
 * and development, listening on loopback by default.
 *
 * `stop()` asks for a fast shutdown (SIGINT: sessions are rolled back, unlike SIGTERM's
 * smart shutdown, which waits for every client to leave). `kill()` sends SIGKILL by default,
 * to the postmaster and every child process at once, like a machine dying.
 * Throws {@link ProcessStartError}, quoting PostgreSQL's output, if it fails to start.
 */
export async function startNativePostgres(
  options: StartNativePostgresOptions,
): Promise<NativePostgresHandle> {
  const binDir = locateNativePostgres(options.binDir);
  const runAs = nativePostgresOsUser();
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? (await freePort(host));
  const dataDir = path.resolve(options.dataDir);
  const durable = options.durable ?? true;
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  const resolved = { ...options, dataDir, host, port, binDir };

  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await prepareDir(dataDir, runAs, { mustBeEmpty: true });
    const initdb = [
      ...['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C'],
      ...(durable ? [] : ['--no-sync']),
    ];
    await runTool(path.join(binDir, 'initdb'), initdb, { runAs, cwd: dataDir, timeoutMs: startTimeoutMs });
  }
  if (options.socketDir !== undefined) await prepareDir(path.resolve(options.socketDir), runAs);

  const settings: Record<string, string | number | boolean> = {
    listen_addresses: host,
    port,
    unix_socket_directories: options.socketDir === undefined ? '' : path.resolve(options.socketDir),
    wal_level: 'replica',
    max_wal_senders: 10,
    // a replica stopped for a while can catch up from the primary's pg_wal (no slot needed)
    wal_keep_size: '128MB',
    hot_standby: true,
    ...(durable ? {} : { fsync: false }),
    ...options.settings,
  };
  const args = [
    '-D',
    dataDir,
    ...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${settingValue(value)}`]),
  ];
  const child = spawnAs(path.join(binDir, 'postgres'), args, runAs, {
    cwd: dataDir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail = new OutputTail();
  child.stdout?.on('data', (chunk: Buffer) => tail.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => tail.push(chunk));
  const exited = exitOf(child);
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  terminateWithParent(child);

  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (spawnError || hasExited(child)) {
      const exit = await exited;
      await delay(50); // let the last output arrive
      throw new ProcessStartError(
        'postgres',
        spawnError
          ? `could not run ${binDir}/postgres: ${spawnError.message}`
          : `it exited (code ${String(exit.code)}, signal ${String(exit.signal)})`,
        tail.toString(),
        exit.code,
      );
    }
    if (await acceptsConnections(dataDir, child.pid)) break;
    if (Date.now() > deadline) {
      signalServer(child, 'SIGKILL');
      throw new ProcessStartError(
        'postgres',
        `it did not accept connections on ${host}:${port} within ${startTimeoutMs} ms`,
        tail.toString(),
      );
    }
    await delay(50);
  }

  const stopTimeoutMs = options.stopTimeoutMs ?? 15_000;
  const base = serverProcess({
    child,
    exited,
    url: `postgres://postgres@${hostForUrl(host)}:${port}/postgres`,
    port,
    tail,
    stopTimeoutMs,
  });
  const handle: NativePostgresHandle = {
    ...base,
    dataDir,
    options: resolved,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      signalServer(child, signal);
    },
    // SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
    stop: () =>
      stopProcess(child, exited, {
        signal: 'SIGINT',
        timeoutMs: stopTimeoutMs,
        forceKill: () => signalServer(child, 'SIGKILL'),
      }),
    async restart() {
      await handle.stop();
      return startNativePostgres(resolved);
    },
  };
  return handle;
}

export interface StartStreamingReplicaOptions {
  /** Must not exist or be empty; `pg_basebackup` fills it. */
  dataDir: string;
  /** @defaultValue a free port */
  port?: number;
  /** `recovery_min_apply_delay` in ms (commits become visible this much later). @defaultValue none */
  applyDelayMs?: number;
  /** Settings of the replica, on top of the primary's `settings`. @defaultValue `{}` */
  settings?: PostgresSettings;
  /** `unix_socket_directories` of the replica. @defaultValue none: TCP only */
  socketDir?: string;
  /** @defaultValue the primary's */
  startTimeoutMs?: number;
}

/**
 * Makes a streaming replica of a running primary started by {@link startNativePostgres}:
 * `pg_basebackup -R -X stream` (which writes `standby.signal` and `primary_conninfo`), then
 * starts it as a hot standby and resolves once it accepts read-only connections.
 * `applyDelayMs` is written to the replica's `postgresql.auto.conf`, so it holds across
 * `restart()`. No replication slot is made: the primary keeps `wal_keep_size` of WAL for a
 * replica that is down for a while.
 */
export async function startStreamingReplica(
  primary: NativePostgresHandle,
  options: StartStreamingReplicaOptions,
): Promise<NativePostgresHandle> {
  const { binDir, host, durable } = primary.options;
  const runAs = nativePostgresOsUser();
  const dataDir = path.resolve(options.dataDir);
  const startTimeoutMs = options.startTimeoutMs ?? primary.options.startTimeoutMs ?? 60_000;
  await prepareDir(dataDir, runAs, { mustBeEmpty: true });
  const backup = [
    ...['-h', dialHost(host ?? '127.0.0.1'), '-p', String(primary.port)],
    ...['-U', 'postgres', '-w', '-D', dataDir, '-R', '-X', 'stream', '--checkpoint=fast'],
    ...(durable === false ? ['--no-sync'] : []),
  ];
  await runTool(path.join(binDir, 'pg_basebackup'), backup, {
    runAs,
    cwd: dataDir,
    timeoutMs: startTimeoutMs,
  });
  if (options.applyDelayMs !== undefined) {
    const line = `recovery_min_apply_delay = '${Math.round(options.applyDelayMs)}ms'\n`;
    await appendFile(path.join(dataDir, 'postgresql.auto.conf'), line);
  }
  return startNativePostgres({
    dataDir,
    port: options.port,
    host,
    socketDir: options.socketDir,
    binDir,
    durable,
    startTimeoutMs,
    stopTimeoutMs: primary.options.stopTimeoutMs,
    settings: { ...primary.options.settings, ...options.settings },
  });
}

function settingValue(value: string | number | boolean): string {
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  return String(value);
}

function spawnAs(
  binary: string,
  args: readonly string[],
  runAs: NativePostgresOsUser | undefined,
  options: SpawnOptions,
): ChildProcess {
  // PG* variables (PGDATA, PGPORT, PGHOST...) of this process must not redirect the tools
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PG')));
  return spawn(binary, args, {
    ...options,
    env: { ...env, LC_ALL: 'C' },
    ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
  });
}

/** Runs initdb or pg_basebackup to completion; throws {@link ProcessStartError} with its output. */
async function runTool(
  binary: string,
  args: readonly string[],
  options: { runAs: NativePostgresOsUser | undefined; cwd: string; timeoutMs: number },
): Promise<void> {
  const what = path.basename(binary);
  const child = spawnAs(binary, args, options.runAs, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const tail = new OutputTail();
  child.stdout?.on('data', (chunk: Buffer) => tail.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => tail.push(chunk));
  let timer: NodeJS.Timeout | undefined;
  const outcome = await new Promise<{ code: number | null; failure?: string }>((resolve) => {
    child.once('error', (error) =>
      resolve({ code: null, failure: `could not run ${binary}: ${error.message}` }),
    );
    child.once('close', (code, signal) =>
      resolve(
        code === 0
          ? { code }
          : { code, failure: `it exited (code ${String(code)}, signal ${String(signal)})` },
      ),
    );
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve({ code: null, failure: `it did not finish within ${options.timeoutMs} ms` });
    }, options.timeoutMs);
  });
  clearTimeout(timer);
  if (outcome.failure !== undefined)
    throw new ProcessStartError(what, outcome.failure, tail.toString(), outcome.code);
}

/**
 * Creates `dir` (mode 0700, as PostgreSQL requires of a data directory) owned by the account
 * the servers run as, after checking that account can reach it: a root-only 0700 temp
 * directory above it would make initdb fail with a bare "Permission denied".
 */
async function prepareDir(
  dir: string,
  runAs: NativePostgresOsUser | undefined,
  options: { mustBeEmpty?: boolean } = {},
): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (options.mustBeEmpty && readdirSync(dir).length > 0) {
    throw new Error(`${dir} is neither empty nor a PostgreSQL data directory (it has no PG_VERSION file)`);
  }
  if (!runAs) return;
  for (let parent = path.dirname(dir); ; parent = path.dirname(parent)) {
    const stat = statSync(parent);
    const mayEnter =
      (stat.uid === runAs.uid && stat.mode & 0o100) ||
      (stat.gid === runAs.gid && stat.mode & 0o010) ||
      stat.mode & 0o001;
    if (!mayEnter) {
      throw new NativePostgresUnavailableError(
        `the ${runAs.name} OS user (PostgreSQL runs as it because this process is root) cannot enter ${parent} ` +
          `(mode ${(stat.mode & 0o777).toString(8)}, owner uid ${stat.uid}), which holds ${dir}: ` +
          `chown it to ${runAs.name} or make it traversable (chmod o+x)`,
      );
    }
    if (parent === path.dirname(parent)) break;
  }
  await chown(dir, runAs.uid, runAs.gid);
  await chmod(dir, 0o700);
}

/**
 * True once `postmaster.pid` names `pid` and its status line (the 8th) says `ready` or
 * `standby`: how `pg_ctl -w` decides, and proof that the server on the port is ours.
 */
async function acceptsConnections(dataDir: string, pid: number | undefined): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return false;
  }
  const lines = text.split('\n');
  const status = lines[7]?.trim();
  return Number(lines[0]) === pid && (status === 'ready' || status === 'standby');
}

/**
 * Signals the postmaster. SIGKILL also goes to its children (backends, WAL sender and
 * receiver...), found through /proc on Linux: each of them is its own process group leader
 * (PostgreSQL calls setsid() in every child), and a crash test wants them gone at once,
 * not when they notice that the postmaster died.
 */
function signalServer(child: ChildProcess, signal: NodeJS.Signals): void {
  if (hasExited(child) || child.pid === undefined) return;
  const children = signal === 'SIGKILL' ? childPids(child.pid) : [];
  child.kill(signal);
  for (const pid of children) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Pids whose parent is `parent` (empty where there is no /proc). */
function childPids(parent: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  return entries.flatMap((pid) => {
    try {
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return ppid === parent ? [Number(pid)] : [];
    } catch {
      return [];
    }
  });
}
