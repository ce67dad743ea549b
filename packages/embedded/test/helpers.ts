import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pgliteServerEntry } from '../src';

/** A fresh directory under the OS temp dir; `cleanup()` removes every one made. */
export function tempDirs(): { make(prefix?: string): string; cleanup(): void } {
  const made: string[] = [];
  return {
    make(prefix = 'llmq-embedded-') {
      const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
      made.push(dir);
      return dir;
    },
    cleanup() {
      for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

/**
 * The PGlite server tests spawn the compiled dist/bin/pglite-server.js (`npm test` builds
 * before running jest). Fail loudly rather than test a missing or stale build.
 */
export function assertServerBuilt(): void {
  const entry = pgliteServerEntry();
  const srcDir = path.join(__dirname, '..', 'src');
  if (statSync(entry).mtimeMs < newestMtime(srcDir)) {
    throw new Error(`${entry} is older than src/: rebuild (cd packages/embedded && npx tsc -p tsconfig.json)`);
  }
}
