/**
 * The two commands a new user meets: `npm start` (llmq start) and `npx llmq keys create`.
 * Real processes, a temporary LLMQ_HOME, the built CLI (`npm test` builds first).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '@llmq/embedded';
import { REPO_ROOT, eventually, readSse } from '@llmq/testing';

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
