import { readFileSync, statSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const id = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'ids use letters, digits, dots, dashes or underscores');
const modelName = z
  .string()
  .regex(/^[A-Za-z0-9._:/-]{1,128}$/, 'model names use letters, digits and . _ : / -');
const ms = (defaultValue: number) => z.number().int().positive().max(86_400_000).default(defaultValue);

const backendSchema = z.strictObject({
  id,
  kind: z.enum(['openai', 'anthropic']),
  /** Operator configuration only: no request can ever choose a URL. */
  baseUrl: z.url({ protocol: /^https?$/ }),
  /** Name of the environment variable holding the key; the key itself never appears in this file. */
  apiKeyEnv: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/, 'the NAME of an environment variable, e.g. OPENAI_API_KEY')
    .optional(),
  /** Public model names this backend serves; `{name, upstream}` when the provider calls it otherwise. */
  models: z
    .array(z.union([modelName, z.strictObject({ name: modelName, upstream: z.string().min(1).max(256) })]))
    .min(1),
  /** Requests in flight at once from one worker process. */
  concurrency: z.number().int().positive().max(100_000).default(64),
  weight: z.number().positive().max(1000).default(1),
  timeouts: z
    .strictObject({
      connectMs: ms(5_000),
      firstTokenMs: ms(60_000),
      idleMs: ms(30_000),
      totalMs: ms(600_000),
    })
    .default({ connectMs: 5_000, firstTokenMs: 60_000, idleMs: 30_000, totalMs: 600_000 }),
  /** Fleet-wide limits of the provider account (shared by every worker through Redis). */
  limits: z
    .strictObject({
      requestsPerMinute: z.number().int().positive().optional(),
      tokensPerMinute: z.number().int().positive().optional(),
    })
    .default({}),
  /** USD per million tokens. */
  price: z
    .strictObject({ inputPerMillion: z.number().nonnegative(), outputPerMillion: z.number().nonnegative() })
    .default({ inputPerMillion: 0, outputPerMillion: 0 }),
  /** Path answered by a healthy backend, relative to baseUrl. @defaultValue "/models" */
  healthPath: z.string().startsWith('/').default('/models'),
});

const modelSchema = z.strictObject({
  name: modelName,
  aliases: z.array(modelName).default([]),
  /** Backends serving it; default: every backend that lists it. */
  backends: z.array(id).optional(),
  /** Other public models to try, in order, when none of this model's backends can answer. */
  fallback: z.array(modelName).default([]),
  /** Semantic caching for every deterministic request to this model, at this cosine similarity. */
  semanticCache: z.strictObject({ threshold: z.number().gt(0).max(1) }).optional(),
  /** Tokens the model takes in and gives out together; RAG context is fitted within it. @defaultValue 8192 */
  contextWindow: z.number().int().min(256).max(10_000_000).optional(),
});

export const providersFileSchema = z.strictObject({
  backends: z.array(backendSchema).min(1),
  models: z.array(modelSchema).default([]),
});

export type BackendConfig = z.infer<typeof backendSchema>;
export type ProvidersFile = z.infer<typeof providersFileSchema>;

export interface Target {
  backend: BackendConfig;
  /** The model name sent to this backend. */
  upstreamModel: string;
}

export interface ModelRoute {
  name: string;
  aliases: string[];
  targets: Target[];
  fallback: string[];
  /** The model's semantic-cache threshold, when the operator turned it on for the model. */
  semanticThreshold: number | null;
  /** Prompt + completion tokens the model takes. */
  contextWindow: number;
}

/** The context window of a model the providers file says nothing about: small enough to be safe. */
export const DEFAULT_CONTEXT_WINDOW = 8192;

/** An invalid providers file; `problems` lists every mistake with its place. */
export class ProvidersFileError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid providers file ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ProvidersFileError';
  }
}

/** A validated, resolved registry: public names and aliases to backends. Immutable. */
export class Registry {
  private readonly byName = new Map<string, ModelRoute>();

  constructor(
    readonly backends: ReadonlyMap<string, BackendConfig>,
    routes: ModelRoute[],
  ) {
    for (const r of routes) {
      this.byName.set(r.name, r);
      for (const a of r.aliases) this.byName.set(a, r);
    }
  }

  /** The route of a public model name or alias, or null. */
  resolve(model: string): ModelRoute | null {
    return this.byName.get(model) ?? null;
  }

  /** Public model names (without aliases). */
  modelNames(): string[] {
    return [...new Set([...this.byName.values()].map((r) => r.name))];
  }

  /** Every name a request may use: the public names and their aliases. */
  requestNames(): string[] {
    return [...this.byName.keys()];
  }
}

/** Validates a parsed providers document and resolves it; throws ProvidersFileError. */
export function buildRegistry(document: unknown, source = '(inline)'): Registry {
  const parsed = providersFileSchema.safeParse(document);
  if (!parsed.success) {
    throw new ProvidersFileError(
      source,
      parsed.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`),
    );
  }
  const file = parsed.data;
  const problems: string[] = [];
  const backends = new Map<string, BackendConfig>();
  file.backends.forEach((b, i) => {
    if (backends.has(b.id)) problems.push(`backends.${i}.id: "${b.id}" is used twice`);
    backends.set(b.id, b);
  });

  // Public name → targets, from what each backend serves.
  const served = new Map<string, Target[]>();
  for (const b of file.backends) {
    for (const m of b.models) {
      const name = typeof m === 'string' ? m : m.name;
      const upstreamModel = typeof m === 'string' ? m : m.upstream;
      served.set(name, [...(served.get(name) ?? []), { backend: b, upstreamModel }]);
    }
  }
  const declared = new Map(file.models.map((m) => [m.name, m]));
  const routes: ModelRoute[] = [];
  const names = new Set<string>();
  for (const name of new Set([...served.keys(), ...declared.keys()])) {
    const decl = declared.get(name);
    let targets = served.get(name) ?? [];
    if (decl?.backends) {
      const wanted = decl.backends;
      for (const b of wanted) {
        if (!backends.has(b)) problems.push(`models.${name}.backends: no backend "${b}"`);
        else if (!targets.some((t) => t.backend.id === b)) {
          problems.push(`models.${name}.backends: backend "${b}" does not list "${name}" in its models`);
        }
      }
      targets = targets.filter((t) => wanted.includes(t.backend.id));
    }
    if (targets.length === 0) problems.push(`models.${name}: no backend serves it`);
    routes.push({
      name,
      aliases: decl?.aliases ?? [],
      targets,
      fallback: decl?.fallback ?? [],
      semanticThreshold: decl?.semanticCache?.threshold ?? null,
      contextWindow: decl?.contextWindow ?? DEFAULT_CONTEXT_WINDOW,
    });
    names.add(name);
  }
  for (const r of routes) {
    for (const a of r.aliases) {
      if (names.has(a)) problems.push(`models.${r.name}.aliases: "${a}" is already a model name`);
      else if (routes.some((o) => o !== r && o.aliases.includes(a))) {
        problems.push(`models.${r.name}.aliases: "${a}" is an alias of two models`);
      }
    }
    for (const f of r.fallback) {
      if (f === r.name) problems.push(`models.${r.name}.fallback: a model cannot fall back to itself`);
      else if (!names.has(f)) problems.push(`models.${r.name}.fallback: no model "${f}"`);
    }
  }
  if (problems.length > 0) throw new ProvidersFileError(source, [...new Set(problems)]);
  return new Registry(backends, routes);
}

function statOf(path: string): { mtimeMs: number; size: number } | null {
  try {
    const { mtimeMs, size } = statSync(path);
    return { mtimeMs, size };
  } catch {
    return null;
  }
}

/** Reads and validates a providers file (YAML, or JSON by its .json extension). */
export function loadRegistryFile(path: string): Registry {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ProvidersFileError(path, [
      `cannot read it: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    ]);
  }
  let document: unknown;
  try {
    document = extname(path) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ProvidersFileError(path, [
      `not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${(error as Error).message}`,
    ]);
  }
  return buildRegistry(document, path);
}

/**
 * The registry in force, reloaded when its file changes. A broken edit is reported and the last
 * good registry stays in force.
 */
export class RegistryWatcher {
  private registry: Registry;
  private timer: NodeJS.Timeout | null = null;
  /** The file's stat when it was last read, so no change between reads can be missed. */
  private loaded: { mtimeMs: number; size: number } | null = null;

  constructor(
    private readonly path: string,
    private readonly events: {
      onReload?: (registry: Registry) => void;
      onRejected?: (error: ProvidersFileError) => void;
    } = {},
  ) {
    this.loaded = statOf(path);
    this.registry = loadRegistryFile(path);
  }

  current(): Registry {
    return this.registry;
  }

  /**
   * Polls the file's stat (works on every filesystem, including bind mounts and ConfigMaps).
   * Each poll compares with the stat of the last read, not with the previous poll (as
   * fs.watchFile does): a change made between the first read and the first poll is not missed.
   */
  start(intervalMs = 1000): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
    this.check();
  }

  private check(): void {
    const now = statOf(this.path);
    if (now && (now.mtimeMs !== this.loaded?.mtimeMs || now.size !== this.loaded.size)) this.reload();
  }

  /** Reloads now; returns whether the new file was taken. */
  reload(): boolean {
    try {
      this.loaded = statOf(this.path);
      this.registry = loadRegistryFile(this.path);
      this.events.onReload?.(this.registry);
      return true;
    } catch (error) {
      this.events.onRejected?.(error as ProvidersFileError);
      return false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
