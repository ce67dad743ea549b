import { join, resolve } from 'node:path';

/** The repository root, from dist/ or src/. */
export const REPO_ROOT = resolve(__dirname, '..', '..', '..');

/** Where the embedded stack keeps its data, its dev credentials and its process table. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.LLMQ_HOME ?? join(REPO_ROOT, '.llmq'));
}

export const appEntry = (app: 'api' | 'worker' | 'llm-simulator') =>
  join(REPO_ROOT, 'apps', app, 'dist', 'main.js');
