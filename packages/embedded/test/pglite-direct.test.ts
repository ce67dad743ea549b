import { existsSync } from 'node:fs';
import path from 'node:path';
import { LOCK_FILE_NAME, startPgliteServer } from '../src';
import { assertServerBuilt, runFixture, tempDirs } from './helpers';

const dirs = tempDirs();
beforeAll(() => assertServerBuilt()); // the fixtures run dist/
afterEach(() => dirs.cleanup());

describe('openPgliteDirect', () => {
  it('opens the directory in-process with pgvector and holds it until closed', async () => {
    const dataDir = dirs.make();
    const report = await runFixture('open-direct', [dataDir]);
    expect(report.norm).toBe(5);
    expect(report.holderWhileOpen).toEqual({ pid: report.pid }); // no url: nothing serves it
    expect(report.secondOpen).toMatchObject({ name: 'DataDirLockedError' });
    expect(report.holderAfterClose).toBeNull();
    expect(report.rowsAfterReopen).toEqual([{ id: 1 }]);
    expect(existsSync(path.join(dataDir, LOCK_FILE_NAME))).toBe(false);
  });

  it('refuses a directory a server is serving, and says where to connect instead', async () => {
    const dataDir = dirs.make();
    const server = await startPgliteServer({ dataDir });
    try {
      const report = await runFixture('open-direct', [dataDir, 'open-only']);
      expect(report.error).toMatchObject({ name: 'DataDirLockedError', pid: server.pid, url: server.url });
    } finally {
      await server.stop();
    }
  });
});
