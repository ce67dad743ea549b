import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What a running `llmq start` records, so the CLI can reach the same database. */
export interface StackFile {
  pid: number;
  databaseUrl: string;
  redisUrl: string;
  apiUrl: string;
}

const file = (dir: string) => join(dir, 'stack.json');

export function writeStackFile(dir: string, stack: StackFile): void {
  writeFileSync(file(dir), JSON.stringify(stack, null, 2) + '\n', { mode: 0o600 });
}

export function removeStackFile(dir: string): void {
  rmSync(file(dir), { force: true });
}

/** The running stack, if its supervisor is still alive. */
export function readLiveStack(dir: string): StackFile | null {
  if (!existsSync(file(dir))) return null;
  try {
    const stack = JSON.parse(readFileSync(file(dir), 'utf8')) as StackFile;
    process.kill(stack.pid, 0);
    return stack;
  } catch {
    return null;
  }
}

/** Reads KEY=value lines (the dev.env format). */
export function readEnvFile(path: string): Record<string, string> {
  if (!existsSync(path)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}
