#!/usr/bin/env node
// `npm start`: set up, then run the product on the embedded stack (see packages/cli/src/start.ts).
import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
execFileSync(process.execPath, [join(root, 'scripts', 'setup.mjs')], { stdio: 'inherit' });
const child = spawn(process.execPath, [join(root, 'packages', 'cli', 'dist', 'main.js'), 'start'], {
  stdio: 'inherit',
});
// Ctrl-C reaches the whole process group; the supervisor does the orderly stop, we wait for it.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code) => process.exit(code ?? 0));
