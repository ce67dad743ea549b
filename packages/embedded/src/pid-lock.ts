/**
 * A `postmaster.pid`-like lock for PGlite data directories. PGlite has no lock of its own,
 * and two instances on one directory corrupt it, so every opener in this package (the
 * server and {@link openPgliteDirect}) takes this lock first.
 *
 * The file `DIR/llmq-pglite.pid` holds the holder's pid on the first line and, once a
 * server listens, its URL on the second. A file whose process is gone is stale and taken
 * over. Known limits: liveness is `kill(pid, 0)` plus, on Linux, a check that the pid
 * still runs node (pids are reused, e.g. across container restarts); two openers racing
 * over one *stale* file could both take it over, which needs two starts within
 * microseconds of each other on a directory whose previous owner crashed.
 */
import { linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DataDirLockedError } from './errors';

export const LOCK_FILE_NAME = 'llmq-pglite.pid';

export interface DataDirLockHolder {
  pid: number;
  /** Set once the holder serves the directory over the wire protocol. */
  url: string | undefined;
}

export interface DataDirLock {
  readonly file: string;
  /** Records where the holder serves the database, for {@link readDataDirLock}. */
  setUrl(url: string): void;
  /** Removes the lock file (if it is still ours). Idempotent. */
  release(): void;
}

// Lock files held by this process: a second open in the same process must be refused
// too, and a crash must not leave them behind.
const held = new Set<string>();
let exitHookInstalled = false;

function releaseAllOnExit(): void {
  for (const file of held) {
    try {
      unlinkSync(file);
    } catch {
      // already gone
    }
  }
}

function lockFileOf(dataDir: string): string {
  return path.join(path.resolve(dataDir), LOCK_FILE_NAME);
}

function readHolder(file: string): DataDirLockHolder | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const [pidLine = '', urlLine = ''] = text.split('\n');
  const pid = Number.parseInt(pidLine, 10);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, url: urlLine.trim() || undefined };
}

function isLive(pid: number, file: string): boolean {
  if (pid === process.pid) return held.has(file);
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // the holder is always a node process; a live pid running something else was reused
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('node');
  } catch {
    return true; // no /proc (macOS) or it just exited: trust kill(0)
  }
}

/** The live process holding the lock of `dataDir`, if any. */
export function readDataDirLock(dataDir: string): DataDirLockHolder | undefined {
  const file = lockFileOf(dataDir);
  const holder = readHolder(file);
  return holder && isLive(holder.pid, file) ? holder : undefined;
}

function writeAtomically(file: string, content: string, replace: boolean): void {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, content);
  try {
    if (replace) renameSync(temp, file);
    else linkSync(temp, file); // fails with EEXIST: creation and content appear at once
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // renamed away
    }
  }
}

/**
 * Takes the lock of `dataDir` (creating the directory), or throws
 * {@link DataDirLockedError} naming the live holder.
 */
export function acquireDataDirLock(dataDir: string): DataDirLock {
  const file = lockFileOf(dataDir);
  mkdirSync(path.dirname(file), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    const holder = readHolder(file);
    if (holder && isLive(holder.pid, file))
      throw new DataDirLockedError(path.resolve(dataDir), holder.pid, holder.url);
    if (holder || attempt > 0) removeIfPresent(file); // stale, or unreadable twice in a row
    try {
      writeAtomically(file, `${process.pid}\n\n`, false);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    held.add(file);
    if (!exitHookInstalled) {
      process.on('exit', releaseAllOnExit);
      exitHookInstalled = true;
    }
    return lockHandle(file);
  }
  throw new Error(`could not take the lock ${file}: it keeps changing`);
}

function removeIfPresent(file: string): void {
  try {
    unlinkSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

function lockHandle(file: string): DataDirLock {
  return {
    file,
    setUrl(url: string) {
      if (held.has(file)) writeAtomically(file, `${process.pid}\n${url}\n`, true);
    },
    release() {
      if (!held.delete(file)) return;
      if (readHolder(file)?.pid === process.pid) removeIfPresent(file);
    },
  };
}
