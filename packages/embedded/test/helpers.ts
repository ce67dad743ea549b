import { spawn } from 'node:child_process';
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

function newestMtime(dir: string, suffix: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(full, suffix));
    else if (entry.name.endsWith(suffix)) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

/**
 * The PGlite server tests spawn the compiled dist/bin/pglite-server.js (`npm test` builds
 * before running jest). A missing build fails here; one older than the sources is
 * reported (not failed: tsc does not rewrite outputs whose source only changed mtime).
 */
export function assertServerBuilt(): void {
  const entry = pgliteServerEntry(); // throws when it is not built
  const distDir = path.dirname(path.dirname(entry));
  const srcDir = path.join(__dirname, '..', 'src');
  if (newestMtime(distDir, '.js') < newestMtime(srcDir, '.ts')) {
    console.warn(
      `${distDir} looks older than ${srcDir}: the server tests run the old build unless you rebuild`,
    );
  }
}

/** Runs `test/fixtures/NAME.js` with node and parses the JSON it prints; kills it after `timeoutMs`. */
export function runFixture(
  name: string,
  args: readonly string[] = [],
  timeoutMs = 30_000,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', `${name}.js`), ...args], {
      cwd: path.join(__dirname, '..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`fixture ${name} ended with ${String(code ?? signal)}:\n${stderr}`));
      else resolve(JSON.parse(stdout) as Record<string, unknown>);
    });
  });
}
