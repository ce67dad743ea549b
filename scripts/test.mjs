#!/usr/bin/env node
// `npm test`: set up (install, build: the tests spawn the built apps), then run every jest test.
import { execFileSync, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
execFileSync(process.execPath, [join(root, 'scripts', 'setup.mjs'), '--for-tests'], { stdio: 'inherit' });
const args = [
  join(root, 'node_modules', 'jest', 'bin', 'jest.js'),
  ...(process.env.CI ? ['--ci'] : []),
  ...process.argv.slice(2),
];
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
