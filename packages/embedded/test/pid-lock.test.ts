import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { acquireDataDirLock, DataDirLockedError, LOCK_FILE_NAME, readDataDirLock } from '../src';
import { tempDirs } from './helpers';

const dirs = tempDirs();
afterEach(() => dirs.cleanup());

function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  return Number(child.stdout);
}

describe('the data directory lock', () => {
  it('is held until released, and a second taker is refused meanwhile', () => {
    const dataDir = dirs.make();
    const lock = acquireDataDirLock(dataDir);
    const file = path.join(dataDir, LOCK_FILE_NAME);
    expect(readFileSync(file, 'utf8')).toBe(`${process.pid}\n\n`);
    expect(readDataDirLock(dataDir)).toEqual({ pid: process.pid, url: undefined });

    expect(() => acquireDataDirLock(dataDir)).toThrow(DataDirLockedError);
    lock.setUrl('postgres://postgres:postgres@127.0.0.1:5999/postgres');
    try {
      acquireDataDirLock(dataDir);
      throw new Error('the second lock was granted');
    } catch (error) {
      expect(error).toBeInstanceOf(DataDirLockedError);
      expect(error).toMatchObject({
        pid: process.pid,
        url: 'postgres://postgres:postgres@127.0.0.1:5999/postgres',
      });
    }

    lock.release();
    expect(existsSync(file)).toBe(false);
    expect(readDataDirLock(dataDir)).toBeUndefined();
    acquireDataDirLock(dataDir).release();
  });

  it('takes over a lock whose process is gone', () => {
    const dataDir = dirs.make();
    const pid = deadPid();
    writeFileSync(path.join(dataDir, LOCK_FILE_NAME), `${pid}\npostgres://stale\n`);
    expect(readDataDirLock(dataDir)).toBeUndefined();
    const lock = acquireDataDirLock(dataDir);
    expect(readDataDirLock(dataDir)).toEqual({ pid: process.pid, url: undefined });
    lock.release();
  });

  it('takes over a lock file that does not name a process', () => {
    const dataDir = dirs.make();
    writeFileSync(path.join(dataDir, LOCK_FILE_NAME), 'garbage');
    const lock = acquireDataDirLock(dataDir);
    expect(readFileSync(path.join(dataDir, LOCK_FILE_NAME), 'utf8')).toBe(`${process.pid}\n\n`);
    lock.release();
  });

  it('refuses a lock held by another live node process', async () => {
    const dataDir = dirs.make();
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)'], { stdio: 'ignore' });
    try {
      writeFileSync(path.join(dataDir, LOCK_FILE_NAME), `${holder.pid}\n\n`);
      expect(() => acquireDataDirLock(dataDir)).toThrow(
        `in use by process ${holder.pid}: stop that process first`,
      );
    } finally {
      holder.kill('SIGKILL');
      await new Promise((resolve) => holder.once('exit', resolve));
    }
    // the same file once its process is gone is stale
    acquireDataDirLock(dataDir).release();
  });

  it('does not remove a lock another process took over after it was released', () => {
    const dataDir = dirs.make();
    const lock = acquireDataDirLock(dataDir);
    const file = path.join(dataDir, LOCK_FILE_NAME);
    const other = deadPid() + 1_000_000; // any pid but ours
    writeFileSync(file, `${other}\n\n`); // as if another process had taken it over
    lock.release();
    expect(readFileSync(file, 'utf8')).toBe(`${other}\n\n`);
  });
});
