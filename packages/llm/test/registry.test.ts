import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProvidersFileError, RegistryWatcher, buildRegistry, loadRegistryFile } from '../src/registry';

const backend = (id: string, models: unknown[], extra: object = {}) => ({
  id,
  kind: 'openai',
  baseUrl: `http://127.0.0.1:1/${id}/v1`,
  models,
  ...extra,
});

function problems(doc: unknown): string[] {
  try {
    buildRegistry(doc, 'test.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(ProvidersFileError);
    return (error as ProvidersFileError).problems;
  }
  throw new Error('expected the file to be rejected');
}

describe('providers file', () => {
  it('maps public names and aliases to backends, with upstream names and fallbacks', () => {
    const registry = buildRegistry({
      backends: [
        backend('a', ['small', { name: 'big', upstream: 'big-2024-06' }], { weight: 2 }),
        backend('b', ['small']),
      ],
      models: [
        { name: 'small', aliases: ['s', 'tiny'], fallback: ['big'], semanticCache: { threshold: 0.93 } },
      ],
    });
    expect(registry.resolve('s')!.semanticThreshold).toBe(0.93);
    expect(registry.resolve('big')!.semanticThreshold).toBeNull();
    const small = registry.resolve('tiny')!;
    expect(small.name).toBe('small');
    expect(small.targets.map((t) => t.backend.id)).toEqual(['a', 'b']);
    expect(small.fallback).toEqual(['big']);
    expect(registry.resolve('big')!.targets[0]!.upstreamModel).toBe('big-2024-06');
    expect(registry.resolve('nope')).toBeNull();
    expect(registry.modelNames().sort()).toEqual(['big', 'small']);
    const a = registry.backends.get('a')!;
    expect(a).toMatchObject({ weight: 2, concurrency: 64, timeouts: { connectMs: 5000, idleMs: 30_000 } });
  });

  it('lists every mistake with its place', () => {
    const found = problems({
      backends: [
        backend('a', ['small']),
        backend('a', ['big']),
        { id: 'c', kind: 'grpc', baseUrl: 'ftp://x', models: [] },
        backend('d', ['small'], { apiKeyEnv: 'sk-123-secret' }),
      ],
      models: [{ name: 'small', fallback: ['ghost'] }],
    });
    expect(found.join('\n')).toMatch(/backends\.2\.kind/);
    expect(found.join('\n')).toMatch(/backends\.2\.baseUrl/);
    expect(found.join('\n')).toMatch(/backends\.2\.models/);
    expect(found.join('\n')).toMatch(/backends\.3\.apiKeyEnv: the NAME of an environment variable/);
    // The secret-looking value is never echoed back.
    expect(found.join('\n')).not.toContain('sk-123-secret');
  });

  it('checks references between models and backends', () => {
    const found = problems({
      backends: [backend('a', ['small']), backend('a', ['big'])],
      models: [
        { name: 'small', fallback: ['ghost', 'small'], backends: ['a', 'zzz'] },
        { name: 'big', aliases: ['small'] },
        { name: 'orphan' },
      ],
    });
    expect(found).toEqual(
      expect.arrayContaining([
        'backends.1.id: "a" is used twice',
        'models.small.backends: no backend "zzz"',
        'models.small.fallback: no model "ghost"',
        'models.small.fallback: a model cannot fall back to itself',
        'models.big.aliases: "small" is already a model name',
        'models.orphan: no backend serves it',
      ]),
    );
  });

  it('reports unreadable and unparseable files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'llmq-reg-'));
    try {
      expect(() => loadRegistryFile(join(dir, 'missing.yaml'))).toThrow(/cannot read it: ENOENT/);
      writeFileSync(join(dir, 'bad.json'), '{"backends": [');
      expect(() => loadRegistryFile(join(dir, 'bad.json'))).toThrow(/not valid JSON/);
      writeFileSync(join(dir, 'bad.yaml'), 'backends: [\n  - id: a\n   kind');
      expect(() => loadRegistryFile(join(dir, 'bad.yaml'))).toThrow(/not valid YAML/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reloads a changed file and keeps the last good one after a broken edit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'llmq-reg-'));
    const path = join(dir, 'providers.yaml');
    try {
      writeFileSync(
        path,
        'backends:\n  - {id: a, kind: openai, baseUrl: "http://127.0.0.1:1/v1", models: [small]}\n',
      );
      const rejected: string[] = [];
      let reloads = 0;
      const watcher = new RegistryWatcher(path, {
        onReload: () => reloads++,
        onRejected: (e) => rejected.push(e.message),
      });
      watcher.start(50);
      expect(watcher.current().resolve('big')).toBeNull();
      writeFileSync(
        path,
        'backends:\n  - {id: a, kind: openai, baseUrl: "http://127.0.0.1:1/v1", models: [small, big], weight: 3}\n',
      );
      await waitFor(() => watcher.current().resolve('big') !== null);
      expect(watcher.current().backends.get('a')!.weight).toBe(3);
      writeFileSync(path, 'backends:\n  - {id: a, kind: nonsense}\n');
      await waitFor(() => rejected.length > 0);
      expect(rejected[0]).toMatch(/backends\.0\.kind/);
      expect(watcher.current().resolve('big')).not.toBeNull(); // last good kept
      expect(reloads).toBe(1);
      watcher.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
