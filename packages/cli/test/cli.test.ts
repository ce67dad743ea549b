/**
 * The two commands a new user meets: `npm start` (llmq start) and `npx llmq keys create`.
 * Real processes, a temporary LLMQ_HOME, the built CLI (`npm test` builds first).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, startPgliteServer, startRedisServer } from '@llmq/embedded';
import { limiterKeys } from '@llmq/rate-limit';
import { REPO_ROOT, eventually, readSse } from '@llmq/testing';
import { Redis } from 'ioredis';

jest.setTimeout(180_000);
const CLI = join(REPO_ROOT, 'packages', 'cli', 'dist', 'main.js');
const run = promisify(execFile);
const KEY = /^llmq_[A-Za-z0-9_-]{32}$/;

let home: string;
beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'llmq-home-'));
});
afterEach(() => rmSync(home, { recursive: true, force: true }));

function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LLMQ_HOME: home, ...extra };
  delete env.DATABASE_URL;
  delete env.REDIS_URL;
  return env;
}

it('keys create prints a new key alone on its last line, against the embedded data directory', async () => {
  const { stdout } = await run(process.execPath, [CLI, 'keys', 'create', '--tenant', 'acme'], {
    env: cliEnv(),
  });
  const lines = stdout.trim().split('\n');
  expect(lines.at(-1)).toMatch(KEY);
  expect(stdout).toContain('tenant "acme"');
  const again = await run(process.execPath, [CLI, 'keys', 'create', '--tenant', 'acme'], { env: cliEnv() });
  expect(again.stdout.trim().split('\n').at(-1)).not.toBe(lines.at(-1));
});

it('keys create refuses a missing or bad tenant with a clear message', async () => {
  await expect(run(process.execPath, [CLI, 'keys', 'create'], { env: cliEnv() })).rejects.toMatchObject({
    code: 2,
    stderr: expect.stringContaining('--tenant is required'),
  });
  await expect(
    run(process.execPath, [CLI, 'keys', 'create', '--tenant', 'no spaces'], { env: cliEnv() }),
  ).rejects.toMatchObject({
    code: 1,
    stderr: expect.stringContaining('tenant names are'),
  });
});

describe('keys: limits, list, revoke (against DATABASE_URL and REDIS_URL)', () => {
  let pg: Awaited<ReturnType<typeof startPgliteServer>>;
  let redisServer: Awaited<ReturnType<typeof startRedisServer>>;
  let redisDir: string;
  beforeAll(async () => {
    redisDir = mkdtempSync(join(tmpdir(), 'llmq-cli-redis-'));
    [pg, redisServer] = await Promise.all([
      startPgliteServer({ dataDir: 'memory', port: await freePort() }),
      startRedisServer({ port: await freePort(), dataDir: redisDir }),
    ]);
  }, 60_000);
  afterAll(async () => {
    await Promise.allSettled([pg?.stop(), redisServer?.stop()]);
    rmSync(redisDir, { recursive: true, force: true });
  });

  const llmq = (args: string[], extra: Record<string, string> = {}) =>
    run(process.execPath, [CLI, ...args], { env: { ...cliEnv(), DATABASE_URL: pg.url, ...extra } });
  const idOf = (stdout: string) => /\(id ([0-9a-f-]{36})\)/.exec(stdout)![1]!;
  interface Listed {
    id: string;
    tenant: string;
    name: string | null;
    revokedAt: string | null;
    limits: Record<string, number | null>;
  }
  const listJson = async (...args: string[]) =>
    JSON.parse((await llmq(['keys', 'list', '--json', ...args])).stdout) as Listed[];

  it('keys create takes limits and budgets and still prints the key alone on its last line', async () => {
    const { stdout } = await llmq([
      'keys',
      'create',
      '--tenant',
      'wonka',
      '--name',
      'factory floor',
      '--rpm',
      '120',
      '--request-burst',
      '20',
      '--tpm',
      '0',
      '--token-burst',
      'default',
      '--daily-budget',
      '2.5',
      '--monthly-budget',
      '40.123456',
    ]);
    expect(stdout.trim().split('\n').at(-1)).toMatch(KEY);
    expect(stdout).toContain('requests/min 120 (burst 20), tokens/min unlimited');
    const [key] = await listJson('--tenant', 'wonka');
    expect(key).toMatchObject({
      id: idOf(stdout),
      tenant: 'wonka',
      name: 'factory floor',
      revokedAt: null,
      limits: {
        requestsPerMinute: 120,
        requestBurst: 20,
        tokensPerMinute: 0,
        tokenBurst: null,
        dailyBudgetUsd: 2.5,
        monthlyBudgetUsd: 40.123456,
      },
    });
  });

  it('refuses bad flags with a usage error (exit 2) and creates nothing', async () => {
    const bad: [string[], string][] = [
      [['keys', 'create', '--tenant', 'wonka', '--rpm', 'lots'], '--rpm is a whole number'],
      [['keys', 'create', '--tenant', 'wonka', '--rpm', '1.5'], '--rpm is a whole number'],
      [
        ['keys', 'create', '--tenant', 'wonka', '--tpm', '99999999999'],
        '--tpm is a whole number from 0 to 1000000000',
      ],
      [['keys', 'create', '--tenant', 'wonka', '--daily-budget', '0.0000001'], 'at most 6 decimals'],
      [['keys', 'create', '--tenant', 'wonka', '--monthly-budget', '$5'], '--monthly-budget is a USD amount'],
      [['keys', 'create', '--tenant', 'wonka', '--burst', '5'], "Unknown option '--burst'"],
      [['keys', 'create', '--tenant', 'wonka', 'extra'], 'Unexpected argument'],
      [['keys', 'revoke'], "needs the key's id"],
      [['keys', 'revoke', 'not-an-id'], 'is not a key id'],
      [['keys', 'limits', '0b8a1c1e-9a43-4f3e-8f5b-6d1f0c2a3b4c'], 'give at least one limit'],
      [['keys', 'list', '--all', 'yes'], 'Unexpected argument'],
      [['keys', 'rotate'], 'unknown command: keys rotate'],
      [['tenants', 'limits', 'wonka', '--max-active-jobs', '-'], '--max-active-jobs is a whole number'],
    ];
    for (const [args, message] of bad) {
      await expect(llmq(args)).rejects.toMatchObject({
        code: 2,
        stderr: expect.stringContaining(message),
      });
    }
    expect(await listJson('--tenant', 'wonka', '--all')).toHaveLength(1);
  });

  it('keys list prints a table of active keys; --all adds revoked ones; --tenant filters', async () => {
    const a = idOf(
      (await llmq(['keys', 'create', '--tenant', 'slugworth', '--name', 'alpha', '--rpm', '7'])).stdout,
    );
    const b = idOf((await llmq(['keys', 'create', '--tenant', 'slugworth', '--name', 'beta'])).stdout);
    await llmq(['keys', 'revoke', b]);

    const { stdout } = await llmq(['keys', 'list', '--tenant', 'slugworth']);
    const lines = stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+TENANT\s+NAME\s+PREFIX\s+CREATED\s+REVOKED\s+RPM/);
    expect(lines[1]).toMatch(
      new RegExp(
        `^${a}\\s+slugworth\\s+alpha\\s+llmq_\\S+…\\s+\\d{4}-\\d{2}-\\d{2} [0-9:]{8}Z\\s+-\\s+7\\s+default`,
      ),
    );
    expect(stdout).not.toContain(b);
    expect(stdout).toContain('1 key;');

    const all = (await llmq(['keys', 'list', '--tenant', 'slugworth', '--all'])).stdout;
    expect(all).toContain(a);
    expect(all).toMatch(
      new RegExp(`${b}\\s+slugworth\\s+beta\\s+\\S+\\s+\\S+ \\S+\\s+\\d{4}-\\d{2}-\\d{2} [0-9:]{8}Z`),
    );
    // Without --tenant: every tenant's keys.
    const everyone = (await llmq(['keys', 'list'])).stdout;
    expect(everyone).toContain('wonka');
    expect(everyone).toContain('slugworth');
    expect((await llmq(['keys', 'list', '--tenant', 'nobody'])).stdout).toContain(
      'no active keys for tenant "nobody"',
    );
  });

  it('keys revoke marks the key in Redis when Redis runs, and says there is nothing to tell when none does', async () => {
    const created = (await llmq(['keys', 'create', '--tenant', 'wonka'])).stdout;
    const id = idOf(created);
    const redis = new Redis(redisServer.url);
    try {
      const revoked = await llmq(['keys', 'revoke', id], { REDIS_URL: redisServer.url, LLMQ_PREFIX: 'cli' });
      expect(revoked.stdout).toContain(`revoked API key`);
      expect(revoked.stdout).toContain('marked revoked in Redis');
      expect(await redis.exists(limiterKeys.revoked('cli', 'wonka', id))).toBe(1);
      expect(await redis.pttl(limiterKeys.revoked('cli', 'wonka', id))).toBeGreaterThan(0);
    } finally {
      await redis.quit();
    }
    const [listed] = (await listJson('--tenant', 'wonka', '--all')).filter((k) => k.id === id);
    expect(listed?.revokedAt).not.toBeNull();

    // Again, with no Redis anywhere: still exit 0, the key stays revoked, and the CLI says why it skipped.
    const again = await llmq(['keys', 'revoke', id]);
    expect(again.stdout).toContain('was already revoked');
    expect(again.stdout).toContain('no REDIS_URL and no running llmq stack');
    const down = await llmq(['keys', 'revoke', id], { REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    expect(down.stdout).toContain('does not answer');

    await expect(llmq(['keys', 'revoke', '0b8a1c1e-9a43-4f3e-8f5b-6d1f0c2a3b4c'])).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('no API key with id'),
    });
  });

  it('keys limits changes limits and the name; tenants limits shows and sets the tenant cap', async () => {
    const id = idOf(
      (await llmq(['keys', 'create', '--tenant', 'oompa', '--rpm', '10', '--name', 'x'])).stdout,
    );
    const changed = await llmq([
      'keys',
      'limits',
      id,
      '--rpm',
      'default',
      '--daily-budget',
      '0.5',
      '--name',
      'y',
    ]);
    expect(changed.stdout).toContain('requests/min default');
    const [key] = await listJson('--tenant', 'oompa');
    expect(key).toMatchObject({ name: 'y', limits: { requestsPerMinute: null, dailyBudgetUsd: 0.5 } });

    expect((await llmq(['tenants', 'limits', 'oompa'])).stdout).toContain('max active jobs default');
    expect((await llmq(['tenants', 'limits', 'oompa', '--max-active-jobs', '3'])).stdout).toContain(
      'max active jobs 3',
    );
    expect((await llmq(['tenants', 'limits', 'oompa'])).stdout).toContain('max active jobs 3');
  });
});

it('start runs the whole product, restarts a crashed worker and a crashed PGlite, stops on SIGINT and keeps its data', async () => {
  const port = await freePort();
  const start = () => {
    const child = spawn(process.execPath, [CLI, 'start'], {
      env: cliEnv({ PORT: String(port), LLMQ_WORKERS: '1', LOG_LEVEL: 'warn' }),
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    return { child, output: () => out };
  };
  const first = start();
  await eventually(
    async () => first.output().includes('llmq is running'),
    `llmq start came up:\n${first.output()}`,
    90_000,
  );
  const env = Object.fromEntries(
    readFileSync(join(home, 'dev.env'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('=') as [string, string]),
  );
  expect(env.LLMQ_API_URL).toBe(`http://127.0.0.1:${port}`);
  expect(env.LLMQ_API_KEY).toMatch(KEY);
  expect(first.output()).toContain(env.LLMQ_API_KEY);
  expect(first.output()).toContain('curl -s -X POST');

  const auth = { authorization: `Bearer ${env.LLMQ_API_KEY}`, 'content-type': 'application/json' };
  const submit = await fetch(`${env.LLMQ_API_URL}/api/generate`, {
    method: 'POST',
    headers: auth,
    body: '{"prompt":"hi","max_tokens":5}',
  });
  expect(submit.status).toBe(202);
  const { jobId, streamUrl } = (await submit.json()) as { jobId: string; streamUrl: string };
  const sse = await readSse(`${env.LLMQ_API_URL}${streamUrl}`, { headers: auth });
  expect(sse.events.at(-1)?.event).toBe('completed');

  // Key commands find the running stack's database and Redis by themselves: a revoked key is
  // refused by the API at once, although the API verified (and cached) it a moment before.
  const made = await run(process.execPath, [CLI, 'keys', 'create', '--tenant', 'acme'], { env: cliEnv() });
  const newKey = made.stdout.trim().split('\n').at(-1)!;
  const newId = /\(id ([0-9a-f-]{36})\)/.exec(made.stdout)![1]!;
  const probe = () =>
    fetch(`${env.LLMQ_API_URL}/api/jobs/${jobId}`, { headers: { authorization: `Bearer ${newKey}` } });
  expect((await probe()).status).toBe(404); // authenticated; another key's job
  const revoked = await run(process.execPath, [CLI, 'keys', 'revoke', newId], { env: cliEnv() });
  expect(revoked.stdout).toContain('marked revoked in Redis');
  expect((await probe()).status).toBe(401);

  // A crashed worker is restarted by the supervisor.
  const pids = await run('pgrep', ['-f', join('apps', 'worker', 'dist', 'main.js')]).then((r) =>
    r.stdout.trim().split('\n'),
  );
  const ours = [];
  for (const pid of pids) {
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
    if (environ.includes(`LLMQ_HOME=${home}`) || environ.includes(home)) ours.push(pid);
  }
  expect(ours.length).toBe(1);
  process.kill(Number(ours[0]), 'SIGKILL');
  await eventually(
    async () => /\[worker-1\] exited .*restarting/.test(first.output()),
    'the supervisor noticed the crash',
  );
  await eventually(
    async () => (first.output().match(/llmq-worker ready/g) ?? []).length >= 2,
    'the worker came back',
  );

  // So is a crashed data store: PGlite comes back on the same port and data, the API reconnects.
  const pglitePid = Number(
    (await run('pgrep', ['-f', `pglite-server.js --data ${join(home, 'pgdata')}`])).stdout
      .trim()
      .split('\n')[0],
  );
  process.kill(pglitePid, 'SIGKILL');
  await eventually(
    async () => first.output().includes('[pglite] restarted'),
    () => `the supervisor restarted PGlite:\n${first.output().slice(-3000)}`,
    60_000,
  );
  const poll = await eventually(
    async () => {
      const r = await fetch(`${env.LLMQ_API_URL}/api/jobs/${jobId}`, { headers: auth });
      return r.status === 200 ? r : undefined;
    },
    'the API reads jobs again after the PGlite restart',
    60_000,
  );
  expect(((await poll.json()) as { status: string }).status).toBe('completed');

  first.child.kill('SIGINT');
  const code = await new Promise((r) => first.child.once('exit', r));
  expect(code).toBe(0);
  expect(first.output()).toContain('stopped');

  // A second start finds the same key and the same job.
  const second = start();
  try {
    await eventually(
      async () => second.output().includes('llmq is running'),
      `second start came up:\n${second.output()}`,
      90_000,
    );
    expect(second.output()).toContain(env.LLMQ_API_KEY);
    const job = (await (await fetch(`${env.LLMQ_API_URL}/api/jobs/${jobId}`, { headers: auth })).json()) as {
      status: string;
      result: string;
    };
    expect(job.status).toBe('completed');
    expect(job.result.split(' ')).toHaveLength(5);
  } finally {
    second.child.kill('SIGINT');
    await new Promise((r) => second.child.once('exit', r));
  }
});
