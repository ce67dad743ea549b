/**
 * The simulator as other tests and benchmarks run it: the built dist/main.js in its own
 * process. `npm test` builds before running jest; so that `npx jest apps/llm-simulator`
 * alone cannot test a stale build, this file rebuilds when any source is newer than dist.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const APP = join(__dirname, '..');
const MAIN = join(APP, 'dist', 'main.js');

function buildIfStale(): void {
  const built = statSync(MAIN, { throwIfNoEntry: false })?.mtimeMs ?? 0;
  const sources = readdirSync(join(APP, 'src')).map((file) => statSync(join(APP, 'src', file)).mtimeMs);
  if (built >= Math.max(...sources)) return;
  const tsc = require.resolve('typescript/bin/tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', join(APP, 'tsconfig.json')], { encoding: 'utf8' });
  if (result.status !== 0)
    throw new Error(`building the simulator failed:\n${result.stdout}${result.stderr}`);
}

/** Spawns dist/main.js and resolves with the URL from its listening line. */
function start(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; lines: string[] }> {
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`exited with ${code} before listening`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(line);
      const match = /^llm-simulator listening on (http:\/\/127\.0\.0\.1:(\d+))$/.exec(line);
      if (match) resolve({ child, url: match[1]!, lines });
    });
  });
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
}

describe('the simulator process', () => {
  beforeAll(buildIfStale, 120_000);

  it('prints its real port when SIM_PORT=0, serves, and exits 0 on SIGTERM', async () => {
    const { child, url, lines } = await start({ SIM_PORT: '0', SIM_TTFT_MS: '0', SIM_TOKEN_MS: '0' });
    const exited = exitOf(child);
    try {
      expect(Number(new URL(url).port)).toBeGreaterThan(0);
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'sim-small',
          messages: [{ role: 'user', content: 'hi' }],
          max_tokens: 3,
        }),
      });
      expect(response.status).toBe(200);
      expect(
        ((await response.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens,
      ).toBe(3);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toEqual({ code: 0, stderr: '' });
    expect(lines).toHaveLength(1);
  });

  it('applies SIM_FAULT from its environment', async () => {
    const { child, url } = await start({ SIM_PORT: '0', SIM_FAULT: 'status=503' });
    const exited = exitOf(child);
    try {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: 'sim-small', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(response.status).toBe(503);
    } finally {
      child.kill('SIGINT');
    }
    expect((await exited).code).toBe(0);
  });

  it('names itself with SIM_NAME, serves only SIM_MODELS, and toggles its fault at run time', async () => {
    const { child, url } = await start({
      SIM_PORT: '0',
      SIM_NAME: 'backend-7',
      SIM_MODELS: 'sim-small',
      SIM_TTFT_MS: '0',
      SIM_TOKEN_MS: '0',
    });
    const exited = exitOf(child);
    const send = (path: string, body: object) =>
      fetch(`${url}${path}`, { method: 'POST', body: JSON.stringify(body) });
    const message = (model: string) =>
      send('/v1/messages', { model, max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] });
    try {
      const served = await message('sim-small');
      expect(served.status).toBe(200);
      expect(served.headers.get('x-simulator-instance')).toBe('backend-7');
      expect(((await served.json()) as { usage: { output_tokens: number } }).usage.output_tokens).toBe(3);

      const chatMissing = await send('/v1/chat/completions', {
        model: 'sim-large',
        messages: [{ role: 'user', content: 'hi' }],
      });
      expect(chatMissing.status).toBe(404);
      expect(await chatMissing.json()).toMatchObject({ error: { code: 'model_not_found' } });
      const messageMissing = await message('sim-large');
      expect(messageMissing.status).toBe(404);
      expect(await messageMissing.json()).toMatchObject({ error: { type: 'not_found_error' } });

      expect(await (await send('/admin/fault', { fault: 'status=529' })).json()).toEqual({
        fault: 'status=529',
      });
      expect((await message('sim-small')).status).toBe(529);
      expect(await (await send('/admin/fault', { fault: null })).json()).toEqual({ fault: null });
      expect((await message('sim-small')).status).toBe(200);

      const stats = (await (await fetch(`${url}/stats`)).json()) as { name: string; requests: object };
      expect(stats.name).toBe('backend-7');
      expect(stats.requests).toMatchObject({ messages: 3, chat: 0 });
    } finally {
      child.kill('SIGTERM');
    }
    expect((await exited).code).toBe(0);
  });

  it('refuses to start on a bad environment, saying which variable is wrong', async () => {
    const child = spawn(process.execPath, [MAIN], {
      env: { ...process.env, SIM_PORT: 'http' },
      stdio: 'pipe',
    });
    const { code, stderr } = await exitOf(child);
    expect(code).toBe(1);
    expect(stderr).toContain('SIM_PORT: must be an integer');
  });
});
