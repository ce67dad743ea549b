#!/usr/bin/env node
// Everything `npm start` and `npm test` need on a fresh machine: Node check, redis-server (and for
// the tests prometheus; installed from Debian's packages when running as root), dependencies, build.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const say = (m) => process.stdout.write(`[setup] ${m}\n`);
const fail = (m) => {
  process.stderr.write(`[setup] ${m}\n`);
  process.exit(1);
};

const [major] = process.versions.node.split('.').map(Number);
if (major < 20) fail(`Node.js 20 or newer is required (this is ${process.version}).`);

function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

if (!process.env.REDIS_URL && !which('redis-server') && !existsSync('/usr/bin/redis-server')) {
  if (process.getuid?.() === 0 && which('apt-get')) {
    say('redis-server is missing; installing it from Debian packages');
    execFileSync('apt-get', ['update'], { stdio: 'inherit' });
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'redis-server'], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } else {
    fail(
      'redis-server is not installed. Install it (Debian/Ubuntu: sudo apt-get install redis-server) or set REDIS_URL.',
    );
  }
}

// The metrics tests run a real Prometheus and lint with promtool, both from Debian's "prometheus"
// package. Only `npm test` asks for them (--for-tests); without them those tests fail and say why.
if (process.argv.includes('--for-tests') && !(which('prometheus') && which('promtool'))) {
  if (process.getuid?.() === 0 && which('apt-get')) {
    say('prometheus is missing (the metrics tests run it); installing it from Debian packages');
    execFileSync('apt-get', ['update'], { stdio: 'inherit' });
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'prometheus'], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    // The tests start their own servers; the packaged service (where systemd started it) is not needed.
    if (existsSync('/run/systemd/system')) {
      spawnSync('systemctl', ['disable', '--now', 'prometheus'], { stdio: 'ignore' });
    }
  } else {
    say(
      'prometheus is not installed: the metrics tests will fail (Debian/Ubuntu: sudo apt-get install prometheus)',
    );
  }
}

const lock = join(root, 'package-lock.json');
const installed = join(root, 'node_modules', '.package-lock.json');
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
  say('installing dependencies (npm ci)');
  const ci = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (ci.status !== 0) {
    // Some npm 11 releases write locks without other platforms' optional packages and then
    // refuse them in `npm ci`; `npm install` honours the same lock.
    say('npm ci refused the lock file; falling back to npm install');
    execFileSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  }
}

say('building');
execFileSync('npx', ['turbo', 'run', 'build', '--output-logs=errors-only'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1', TURBO_NO_UPDATE_NOTIFIER: '1' },
});
