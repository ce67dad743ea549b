/**
 * The deployment files (infra/Dockerfile, docker-compose.yml, infra/k8s, the load balancer,
 * Prometheus and Grafana configuration) checked against the code they deploy, without Docker or
 * a cluster: every variable they set is one the app parses and its value passes; probes,
 * Services, scrape targets and URLs name ports that something listens on; mounted files exist;
 * grace periods outlast the drains; dashboards and autoscalers name metrics the code exports
 * and the queues the scaled workers consume. Each problem names its file.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, posix, resolve } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import { buildRegistry } from '@llmq/llm';
import { GENERATE_QUEUES } from '@llmq/queue';
import { apiEnvSchema } from '../../apps/api/src/config';
import { limitsEnvSchema } from '../../apps/api/src/limits';
import { metricsEnvSchema as apiMetricsEnvSchema } from '../../apps/api/src/metrics';
import { workerEnvSchema } from '../../apps/worker/src/config';
import { metricsEnvSchema as workerMetricsEnvSchema } from '../../apps/worker/src/metrics';
import { simulatorEnvSchema } from '../../apps/llm-simulator/src/config';

const ROOT = resolve(__dirname, '..', '..');
const COMPOSE_FILE = 'docker-compose.yml';
const K8S_DIR = 'infra/k8s';

// ---------------------------------------------------------------------------------------------
// Readers

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined =>
  typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
const repoPath = (p: string) => join(ROOT, p);
const readRepo = (p: string) => readFileSync(repoPath(p), 'utf8');
const isFile = (p: string) => existsSync(repoPath(p)) && statSync(repoPath(p)).isFile();

/** Every document of a YAML file (merge keys `<<` resolved); parse errors become problems. */
function readYaml(file: string, problems: string[]): Obj[] {
  const out: Obj[] = [];
  for (const doc of parseAllDocuments(readRepo(file), { merge: true })) {
    for (const error of doc.errors) problems.push(`${file}: not valid YAML: ${error.message}`);
    const value: unknown = doc.toJS();
    if (isObj(value)) out.push(value);
  }
  return out;
}

function filesUnder(dir: string, ext: RegExp): string[] {
  return readdirSync(repoPath(dir)).flatMap((name) => {
    const p = posix.join(dir, name);
    if (statSync(repoPath(p)).isDirectory()) return filesUnder(p, ext);
    return ext.test(name) ? [p] : [];
  });
}

/** `30s`, `1m30s`, `1h` (compose, HAProxy; a bare number is ms) → ms; null when unreadable. */
function durationMs(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const units: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  const parts = [...raw.trim().matchAll(/(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== raw.trim()) return null;
  return parts.reduce((sum, p) => sum + Number(p[1]) * (units[p[2] ?? 'ms'] ?? 1), 0);
}

/** Compose interpolation with the defaults the file gives: `${X:-default}` → default. */
function interpolate(value: string): string {
  return value
    .replace(/\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?]([^}]*))?\}/g, (_m, fallback?: string) => fallback ?? '')
    .replace(/\$\$/g, '$');
}

function urlTarget(raw: string): { host: string; port: number } | null {
  const defaults: Record<string, number> = {
    'redis:': 6379,
    'rediss:': 6379,
    'postgres:': 5432,
    'postgresql:': 5432,
    'http:': 80,
    'https:': 443,
  };
  try {
    const url = new URL(raw);
    const port = url.port ? Number(url.port) : defaults[url.protocol];
    return port === undefined ? null : { host: url.hostname, port };
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// The apps' settings, as each main.ts parses them

type Role = 'api' | 'worker' | 'simulator';
const ROLES: readonly Role[] = ['api', 'worker', 'simulator'];

interface RoleSpec {
  source: string;
  /** The variables main.ts parses; each is parsed on its own, so one bad value hides no other. */
  shape: z.ZodRawShape;
  /** Ports the process listens on, from its parsed settings. */
  ports(parsed: Obj): number[];
  /** How long the process may take to stop after SIGTERM, in ms. */
  stopMs(parsed: Obj): number;
}

const ROLE_SPECS: Record<Role, RoleSpec> = {
  api: {
    source: 'apps/api/src (apiEnvSchema, limitsEnvSchema, metricsEnvSchema)',
    shape: { ...apiEnvSchema.shape, ...limitsEnvSchema.shape, ...apiMetricsEnvSchema.shape },
    ports: (parsed) => [num(parsed.PORT)],
    stopMs: (parsed) => num(parsed.DRAIN_DELAY_MS) + num(parsed.SHUTDOWN_TIMEOUT_MS),
  },
  worker: {
    source: 'apps/worker/src (workerEnvSchema, metricsEnvSchema)',
    shape: { ...workerEnvSchema.shape, ...workerMetricsEnvSchema.shape },
    // METRICS_PORT 0 picks a free port: nothing fixed to scrape or probe.
    ports: (parsed) => (num(parsed.METRICS_PORT) > 0 ? [num(parsed.METRICS_PORT)] : []),
    stopMs: (parsed) => num(parsed.DRAIN_TIMEOUT_MS),
  },
  simulator: {
    source: 'apps/llm-simulator/src/config.ts (simulatorEnvSchema)',
    shape: simulatorEnvSchema.in.shape,
    ports: (parsed) => [num(parsed.SIM_PORT)],
    // apps/llm-simulator/src/main.ts: SHUTDOWN_GRACE_MS
    stopMs: () => 5_000,
  },
};

/** One container of an llmq role, from compose or Kubernetes. */
interface Container {
  file: string;
  where: string;
  role: Role;
  /** null: set from a source the files do not resolve (a field reference, say). */
  env: Map<string, string | null>;
  /** The text at a path inside the container, or why the files do not provide it. */
  mounted(path: string): { text: string; from: string } | string;
}

interface Checked {
  problems: string[];
  raw: Record<string, string>;
  parsed: Obj;
  ports: number[];
  stopMs: number;
  /** Hosts the container's providers file sends requests to. */
  backends: { host: string; port: number; what: string }[];
}

/** Names and values against the role's schema; the providers file through the real parser. */
function checkContainer(c: Container): Checked {
  const spec = ROLE_SPECS[c.role];
  const at = `${c.file}: ${c.where}`;
  const problems: string[] = [];
  const raw: Record<string, string> = {};
  for (const [name, value] of c.env) if (value) raw[name] = value;

  const providers = c.role === 'simulator' ? null : checkProviders(c, raw, at, problems);
  for (const name of c.env.keys()) {
    const known =
      name in spec.shape ||
      name === 'ROLE' ||
      name === 'NODE_ENV' ||
      name.startsWith('OTEL_') ||
      name === raw.EMBEDDINGS_API_KEY_ENV ||
      (c.role === 'worker' && providers?.keyNames.has(name) === true);
    if (!known) problems.push(`${at}: ${name} is not a setting of ${spec.source}`);
  }
  if (raw.ROLE !== c.role) problems.push(`${at}: ROLE must be "${c.role}"`);

  const parsed: Obj = {};
  for (const [name, field] of Object.entries(spec.shape)) {
    if (c.env.get(name) === null) continue;
    const result = (field as z.ZodType).safeParse(raw[name]);
    if (result.success) parsed[name] = result.data;
    else if (raw[name] === undefined) problems.push(`${at}: ${name}: required, but not set`);
    else
      problems.push(
        `${at}: ${name}: ${result.error.issues.map((i) => i.message).join('; ')} (got "${raw[name]}")`,
      );
  }
  return {
    problems,
    raw,
    parsed,
    ports: spec.ports(parsed),
    stopMs: spec.stopMs(parsed),
    backends: providers?.backends ?? [],
  };
}

function checkProviders(c: Container, raw: Record<string, string>, at: string, problems: string[]) {
  const keyNames = new Set<string>();
  const backends: Checked['backends'] = [];
  const path = raw.PROVIDERS_FILE;
  if (path === undefined) return { keyNames, backends };
  const file = c.mounted(path);
  if (typeof file === 'string') {
    problems.push(`${at}: PROVIDERS_FILE ${path}: ${file}`);
    return { keyNames, backends };
  }
  try {
    const registry = buildRegistry(parseYaml(file.text), file.from);
    for (const b of registry.backends.values()) {
      if (b.apiKeyEnv) keyNames.add(b.apiKeyEnv);
      const target = urlTarget(b.baseUrl);
      if (target) backends.push({ ...target, what: `backend ${b.id} of ${file.from}` });
    }
    const model = raw.DEFAULT_MODEL ?? 'sim-small';
    if (c.role === 'api' && !registry.resolve(model)) {
      problems.push(`${at}: DEFAULT_MODEL "${model}" is not a model of ${file.from}`);
    }
  } catch (error) {
    problems.push(`${at}: ${file.from} is not a valid providers file: ${(error as Error).message}`);
  }
  return { keyNames, backends };
}

/** The data stores and services an API or worker connects to. */
function urlsOf(raw: Record<string, string>): { name: string; url: string }[] {
  const list = ['REDIS_URL', 'CACHE_REDIS_URL', 'DATABASE_URL', 'EMBEDDINGS_BASE_URL']
    .filter((name) => raw[name])
    .map((name) => ({ name, url: raw[name]! }));
  for (const url of (raw.DATABASE_REPLICA_URLS ?? '').split(',').map((s) => s.trim())) {
    if (url) list.push({ name: 'DATABASE_REPLICA_URLS', url });
  }
  return list;
}

/** The generate queues a worker consumes (WORKER_QUEUES as the worker parses it). */
function consumedQueues(parsed: Obj): string[] {
  return arr(parsed.WORKER_QUEUES).flatMap((tier) =>
    tier === 'interactive' || tier === 'batch' ? [GENERATE_QUEUES[tier]] : [],
  );
}

// ---------------------------------------------------------------------------------------------
// Metric names: llmq_* from packages/observability, prom-client's default nodejs_* / process_*

function knownMetricNames(): Set<string> {
  const names = new Set<string>();
  for (const file of filesUnder('packages/observability/src', /\.ts$/)) {
    for (const m of readRepo(file).matchAll(/name:\s*'(llmq_[a-z0-9_]+)'/g)) {
      for (const suffix of ['', '_bucket', '_sum', '_count']) names.add(m[1]! + suffix);
    }
  }
  return names;
}
const KNOWN_METRICS = knownMetricNames();

function checkPromQL(expr: string, at: string): string[] {
  const names = [...expr.matchAll(/\b((?:llmq|nodejs|process)_[a-z0-9_]+)\b/g)].map((m) => m[1]!);
  if (names.length === 0) return [`${at}: the query names no llmq_, nodejs_ or process_ metric: ${expr}`];
  return names
    .filter((n) => n.startsWith('llmq_') && !KNOWN_METRICS.has(n))
    .map((n) => `${at}: ${n} is not a metric of packages/observability`);
}

// ---------------------------------------------------------------------------------------------
// infra/Dockerfile

function checkDockerfile(path: string, context: string): string[] {
  if (!isFile(path)) return [`${path}: does not exist`];
  const lines = readRepo(path)
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim());
  const problems: string[] = [];
  const args = new Map<string, string>();
  for (const m of lines.map((l) => /^ARG\s+(\w+)=(\S+)/.exec(l))) if (m) args.set(m[1]!, m[2]!);
  const froms = lines.filter((l) => /^FROM\s/.test(l));
  const stages = new Set(froms.map((l) => /\sAS\s+(\S+)/i.exec(l)?.[1]));
  for (const l of froms) {
    const image = l.split(/\s+/)[1]!.replace(/\$\{(\w+)\}/g, (_m, n: string) => args.get(n) ?? '');
    if (image !== 'node:20-bookworm-slim' && !stages.has(image)) {
      problems.push(`${path}: "${l}": stages start from node:20-bookworm-slim`);
    }
  }
  const user = lines.filter((l) => /^USER\s/.test(l)).pop();
  if (!user || /^USER\s+(root|0)\b/.test(user)) problems.push(`${path}: the runtime stage runs as root`);
  if (!lines.some((l) => /^HEALTHCHECK\s/.test(l))) problems.push(`${path}: no HEALTHCHECK`);
  if (!lines.includes('STOPSIGNAL SIGTERM')) problems.push(`${path}: no STOPSIGNAL SIGTERM`);
  const exposed = lines
    .filter((l) => /^EXPOSE\s/.test(l))
    .flatMap((l) => l.split(/\s+/).slice(1).map(Number));
  for (const role of ROLES) {
    for (const port of ROLE_SPECS[role].ports(defaultsOf(role))) {
      if (!exposed.includes(port)) problems.push(`${path}: EXPOSE lacks ${port}, the ${role}'s default port`);
    }
  }
  for (const l of lines.filter((x) => /^COPY\s/.test(x) && !x.includes('--from='))) {
    const parts = l.split(/\s+/).filter((p) => !p.startsWith('--'));
    for (const src of parts.slice(1, -1)) {
      if (!existsSync(join(ROOT, context, src)))
        problems.push(`${path}: "${l}": ${src} is not in the build context`);
    }
  }
  return [...problems, ...checkRuntimeFiles()];
}

const defaultsOf = (role: Role): Obj =>
  Object.fromEntries(
    Object.entries(ROLE_SPECS[role].shape).map(([k, f]) => [k, (f as z.ZodType).safeParse(undefined).data]),
  );

/** Directories the code reads beside dist/ at run time (join(__dirname, '..', 'sql')) reach the image. */
function checkRuntimeFiles(): string[] {
  const script = 'infra/docker/assemble.sh';
  const copied = /for part in ([^;]+);/.exec(readRepo(script))?.[1]?.split(/\s+/) ?? [];
  const problems: string[] = [];
  for (const dir of ['apps', 'packages']) {
    for (const ws of readdirSync(repoPath(dir))) {
      const src = posix.join(dir, ws, 'src');
      if (!existsSync(repoPath(src))) continue;
      for (const file of filesUnder(src, /\.ts$/)) {
        for (const m of readRepo(file).matchAll(/join\(__dirname,\s*'\.\.',\s*'([^']+)'/g)) {
          if (!copied.includes(m[1]!))
            problems.push(`${script}: ${file} reads ${m[1]}/ at run time; it is not copied`);
        }
      }
    }
  }
  return problems;
}

/** The roles infra/docker/entrypoint.sh starts. */
function entrypointRoles(): Set<string> {
  return new Set(
    [...readRepo('infra/docker/entrypoint.sh').matchAll(/^\s*([a-z]+)\)\s*exec node /gm)].map((m) => m[1]!),
  );
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml, infra/haproxy, infra/prometheus, infra/grafana

interface Haproxy {
  file: string;
  binds: number[];
  servers: { host: string; port: number; line: string }[];
  timeouts: Map<string, number>;
}

function readHaproxy(file: string): Haproxy {
  const cfg: Haproxy = { file, binds: [], servers: [], timeouts: new Map() };
  for (const line of readRepo(file)
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())) {
    const [word, ...rest] = line.split(/\s+/);
    if (word === 'bind') {
      const port = Number(/:(\d+)$/.exec(rest[0] ?? '')?.[1]);
      if (port) cfg.binds.push(port);
    } else if (word === 'server' || word === 'server-template') {
      const m = /^([^:]+):(\d+)$/.exec(rest[word === 'server' ? 1 : 2] ?? '');
      if (m) cfg.servers.push({ host: m[1]!, port: Number(m[2]), line });
    } else if (word === 'timeout' && rest[0] && rest[1]) {
      const ms = durationMs(rest[1]);
      if (ms !== null) cfg.timeouts.set(rest[0], ms);
    }
  }
  return cfg;
}

interface ComposeService {
  name: string;
  def: Obj;
  env: Map<string, string | null>;
  /** container path → repository path, of bind mounts */
  binds: Map<string, string>;
  role: Role | null;
  checked: Checked | null;
  /** The ports it listens on, where known. */
  listens: number[] | null;
}

/** Ports of the third-party images used, by image name. */
const STANDARD_PORTS: [RegExp, number][] = [
  [/^redis:/, 6379],
  [/^(pgvector\/pgvector|postgres):/, 5432],
  [/^prom\/prometheus:/, 9090],
  [/^grafana\/grafana:/, 3000],
];

class ComposeModel {
  readonly problems: string[] = [];
  readonly services: ComposeService[];
  haproxy: Haproxy | null = null;

  constructor(compose: Obj) {
    this.services = Object.entries(obj(compose.services)).map(([name, def]) => this.service(name, obj(def)));
  }

  get(name: string | undefined): ComposeService | undefined {
    return this.services.find((s) => s.name === name);
  }

  /** A problem unless `host` is a service that listens on `port`. */
  reaches(host: string, port: number, at: string): void {
    const svc = this.get(host);
    if (!svc) this.problems.push(`${at}: ${host} is not a service of ${COMPOSE_FILE}`);
    else if (svc.listens && !svc.listens.includes(port)) {
      this.problems.push(
        `${at}: ${host}:${port}, but ${host} listens on ${svc.listens.join(', ') || 'nothing'}`,
      );
    }
  }

  private service(name: string, def: Obj): ComposeService {
    const at = `${COMPOSE_FILE}: service ${name}`;
    const env = new Map<string, string | null>();
    const environment = def.environment;
    const entries: [string, unknown][] = Array.isArray(environment)
      ? environment.map((e) => {
          const [k, ...v] = String(e).split('=');
          return [k!, v.join('=')];
        })
      : Object.entries(obj(environment));
    for (const [k, v] of entries) {
      if (typeof v === 'boolean') this.problems.push(`${at}: ${k}: quote booleans ("${v}")`);
      env.set(k, v === null || v === undefined ? '' : interpolate(String(v)));
    }
    const binds = new Map<string, string>();
    for (const v of arr(def.volumes)) {
      const [source, target] = (
        typeof v === 'string' ? v : `${str(obj(v).source)}:${str(obj(v).target)}`
      ).split(':');
      if (source && target && /^\.\.?\//.test(source)) binds.set(target, posix.normalize(source));
    }
    const role = ROLES.find((r) => r === env.get('ROLE')) ?? null;
    const svc: ComposeService = { name, def, env, binds, role, checked: null, listens: null };
    if (role) {
      svc.checked = checkContainer({
        file: COMPOSE_FILE,
        where: `service ${name}`,
        role,
        env,
        mounted: (p) => this.mounted(svc, p),
      });
      svc.listens = svc.checked.ports;
    } else {
      const image = str(def.image) ?? '';
      const haproxyCfg = binds.get('/usr/local/etc/haproxy/haproxy.cfg');
      if (image.startsWith('haproxy:') && haproxyCfg && isFile(haproxyCfg)) {
        this.haproxy = readHaproxy(haproxyCfg);
        svc.listens = this.haproxy.binds;
      } else {
        const port = STANDARD_PORTS.find(([re]) => re.test(image))?.[1];
        svc.listens = port === undefined ? null : [port];
      }
    }
    return svc;
  }

  /** The file at a container path, through the service's bind mounts. */
  private mounted(svc: ComposeService, path: string): { text: string; from: string } | string {
    for (const [target, source] of svc.binds) {
      const rest =
        path === target ? '' : path.startsWith(`${target}/`) ? path.slice(target.length + 1) : null;
      if (rest === null) continue;
      const file = rest ? posix.join(source, rest) : source;
      return isFile(file) ? { text: readRepo(file), from: file } : `${file} does not exist`;
    }
    return 'no volume of the service mounts it';
  }
}

function checkCompose(compose: Obj): string[] {
  const model = new ComposeModel(compose);
  checkComposeServices(model);
  checkComposeConnections(model);
  checkRedisRoles(model);
  checkLoadBalancer(model);
  checkPrometheus(model);
  checkGrafana(model);
  return [...new Set(model.problems)];
}

/** Images and builds, mounts, settings, grace periods, ROLEs, tiers. */
function checkComposeServices(model: ComposeModel): void {
  const roles = entrypointRoles();
  const p = model.problems;
  for (const svc of model.services) {
    const at = `${COMPOSE_FILE}: service ${svc.name}`;
    const image = str(svc.def.image);
    const build = svc.def.build;
    if (!image && !build) p.push(`${at}: neither image nor build`);
    if (build !== undefined) {
      const b = isObj(build) ? build : { context: build };
      const dockerfile = posix.join(str(b.context) ?? '.', str(b.dockerfile) ?? 'Dockerfile');
      if (!isFile(dockerfile)) p.push(`${at}: build: ${dockerfile} does not exist`);
      else if (dockerfile === 'infra/Dockerfile' && !svc.role)
        p.push(`${at}: the llmq image needs ROLE (${ROLES.join(', ')})`);
    } else if (image && !/:[\w.-]+$/.test(image)) {
      p.push(`${at}: image ${image} has no tag`);
    }
    for (const [target, source] of svc.binds) {
      if (!existsSync(repoPath(source))) p.push(`${at}: ${source} (mounted at ${target}) does not exist`);
    }
    if (!svc.role || !svc.checked) continue;
    p.push(...svc.checked.problems);
    if (!roles.has(svc.role)) p.push(`${at}: infra/docker/entrypoint.sh starts no ROLE ${svc.role}`);
    const raw = str(svc.def.stop_grace_period);
    const grace = raw === undefined ? 10_000 : durationMs(raw);
    if (grace === null || grace < svc.checked.stopMs) {
      p.push(
        `${at}: stop_grace_period ${raw ?? '(10s)'} is shorter than its drain (${svc.checked.stopMs} ms)`,
      );
    }
  }
  const consumed = model.services.flatMap((s) => (s.checked ? consumedQueues(s.checked.parsed) : []));
  for (const q of Object.values(GENERATE_QUEUES)) {
    if (!consumed.includes(q)) p.push(`${COMPOSE_FILE}: no worker service consumes the ${q} queue`);
  }
}

/** Published ports, data store URLs and provider backends name services that listen there. */
function checkComposeConnections(model: ComposeModel): void {
  for (const svc of model.services) {
    const at = `${COMPOSE_FILE}: service ${svc.name}`;
    for (const port of arr(svc.def.ports)) {
      const spec = interpolate(isObj(port) ? (str(port.target) ?? '') : String(port));
      model.reaches(svc.name, Number(spec.split(':').pop()!.split('/')[0]), `${at}: ports "${spec}"`);
    }
    for (const { name, url } of urlsOf(svc.checked?.raw ?? {})) {
      const t = urlTarget(url);
      if (t) model.reaches(t.host, t.port, `${at}: ${name}`);
    }
    for (const b of svc.checked?.backends ?? []) model.reaches(b.host, b.port, `${at}: ${b.what}`);
  }
}

/** The queue Redis never evicts and persists; the cache Redis is bounded, evicts, keeps nothing. */
function checkRedisRoles(model: ComposeModel): void {
  const llmq = model.services.filter((s) => s.role === 'api' || s.role === 'worker');
  const hostOf = (name: string) => new Set(llmq.map((s) => urlTarget(s.checked?.raw[name] ?? '')?.host));
  const command = (host: string | undefined) => `${arr(model.get(host)?.def.command).map(String).join(' ')} `;
  const [queue, ...otherQueues] = hostOf('REDIS_URL');
  const [cache, ...otherCaches] = hostOf('CACHE_REDIS_URL');
  if (otherQueues.length || otherCaches.length) {
    model.problems.push(`${COMPOSE_FILE}: the APIs and workers disagree on REDIS_URL or CACHE_REDIS_URL`);
  }
  if (!/--maxmemory-policy noeviction /.test(command(queue)) || !/--appendonly yes /.test(command(queue))) {
    model.problems.push(
      `${COMPOSE_FILE}: the queue Redis (${queue}) needs --maxmemory-policy noeviction and --appendonly yes`,
    );
  }
  const c = command(cache);
  if (!cache || cache === queue) {
    model.problems.push(`${COMPOSE_FILE}: CACHE_REDIS_URL must name a Redis of its own`);
  } else if (
    !/--maxmemory \S+ /.test(c) ||
    !/allkeys-lru /.test(c) ||
    !/--appendonly no /.test(c) ||
    !/--save {2}/.test(c)
  ) {
    model.problems.push(
      `${COMPOSE_FILE}: the cache Redis (${cache}) needs --maxmemory, allkeys-lru, --save "" and --appendonly no`,
    );
  }
}

/** HAProxy sends where the APIs listen, with timeouts that let SSE streams live. */
function checkLoadBalancer(model: ComposeModel): void {
  const lb = model.haproxy;
  if (!lb) {
    model.problems.push(`${COMPOSE_FILE}: no haproxy service with its configuration mounted`);
    return;
  }
  if (lb.servers.length === 0) model.problems.push(`${lb.file}: no server lines`);
  for (const s of lb.servers) model.reaches(s.host, s.port, `${lb.file}: "${s.line}"`);
  const apis = model.services.filter((s) => s.role === 'api');
  for (const api of apis) {
    if (!lb.servers.some((s) => s.host === api.name))
      model.problems.push(`${lb.file}: does not balance service ${api.name}`);
  }
  const heartbeat = Math.max(...apis.map((a) => num(a.checked?.parsed.SSE_HEARTBEAT_MS)));
  for (const name of ['server', 'client']) {
    const t = lb.timeouts.get(name) ?? 0;
    if (t < 4 * heartbeat) {
      model.problems.push(
        `${lb.file}: timeout ${name} ${t} ms would cut idle SSE streams (heartbeat ${heartbeat} ms)`,
      );
    }
  }
}

function checkPrometheus(model: ComposeModel): void {
  const file = 'infra/prometheus/prometheus.yml';
  const p = model.problems;
  if (!model.services.some((s) => [...s.binds.values()].includes(file))) {
    p.push(`${COMPOSE_FILE}: no service mounts ${file}`);
    return;
  }
  const jobs = arr(obj(readYaml(file, p)[0]).scrape_configs).map(obj);
  if (jobs.length === 0) p.push(`${file}: no scrape_configs`);
  const names = jobs.map((j) => str(j.job_name) ?? '(no job_name)');
  for (const n of names.filter((n, i) => names.indexOf(n) !== i)) p.push(`${file}: job_name ${n} twice`);
  const scraped = new Set<string>();
  for (const job of jobs) {
    const at = `${file}: job ${str(job.job_name)}`;
    for (const sd of arr(job.dns_sd_configs).map(obj)) {
      for (const host of arr(sd.names).map(String)) {
        model.reaches(host, Number(sd.port), at);
        scraped.add(`${host}:${Number(sd.port)}`);
      }
    }
    for (const target of arr(job.static_configs).flatMap((sc) => arr(obj(sc).targets).map(String))) {
      const [host, port] = target.split(':');
      if (host !== 'localhost') model.reaches(host!, Number(port), at);
    }
  }
  for (const svc of model.services.filter((s) => s.role === 'api' || s.role === 'worker')) {
    for (const port of svc.listens ?? []) {
      if (!scraped.has(`${svc.name}:${port}`)) p.push(`${file}: nothing scrapes ${svc.name}:${port}`);
    }
  }
}

function checkGrafana(model: ComposeModel): void {
  const p = model.problems;
  const grafana = model.services.find((s) => /^grafana\//.test(str(s.def.image) ?? ''));
  const datasources = grafana?.binds.get('/etc/grafana/provisioning/datasources');
  const providers = grafana?.binds.get('/etc/grafana/provisioning/dashboards');
  if (!grafana || !datasources || !providers) {
    p.push(
      `${COMPOSE_FILE}: no grafana service with provisioning/datasources and provisioning/dashboards mounted`,
    );
    return;
  }
  const uids = new Set<string>();
  for (const file of filesUnder(datasources, /\.ya?ml$/)) {
    for (const ds of readYaml(file, p).flatMap((d) => arr(d.datasources).map(obj))) {
      if (str(ds.uid)) uids.add(str(ds.uid)!);
      const t = urlTarget(str(ds.url) ?? '');
      if (t) model.reaches(t.host, t.port, `${file}: datasource ${str(ds.name)}`);
    }
  }
  for (const file of filesUnder(providers, /\.ya?ml$/)) {
    for (const provider of readYaml(file, p).flatMap((d) => arr(d.providers).map(obj))) {
      const path = str(obj(provider.options).path) ?? '';
      const source = grafana.binds.get(path);
      const boards = source && existsSync(repoPath(source)) ? filesUnder(source, /\.json$/) : [];
      if (boards.length === 0)
        p.push(`${file}: provider ${str(provider.name)}: no dashboards mounted at ${path}`);
      for (const board of boards) p.push(...checkDashboard(board, uids));
    }
  }
}

function checkDashboard(file: string, uids: Set<string>): string[] {
  let board: Obj;
  try {
    board = obj(JSON.parse(readRepo(file)));
  } catch (error) {
    return [`${file}: not valid JSON: ${(error as Error).message}`];
  }
  const problems: string[] = [];
  const panels = arr(board.panels).map(obj);
  if (panels.length === 0) problems.push(`${file}: no panels`);
  for (const panel of panels) {
    const at = `${file}: panel "${str(panel.title)}"`;
    const targets = arr(panel.targets).map(obj);
    if (targets.length === 0) problems.push(`${at}: no queries`);
    for (const t of targets) {
      const uid = str(obj(t.datasource ?? panel.datasource).uid);
      if (!uid || !uids.has(uid)) problems.push(`${at}: datasource uid ${uid} is not provisioned`);
      problems.push(...checkPromQL(str(t.expr) ?? '', at));
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------
// infra/k8s

interface K8sObject {
  file: string;
  kind: string;
  name: string;
  value: Obj;
}

/** Every object of every YAML file under infra/k8s (Helm values and the like have no kind). */
function readK8s(problems: string[]): K8sObject[] {
  return filesUnder(K8S_DIR, /\.ya?ml$/).flatMap((file) =>
    readYaml(file, problems)
      .filter((value) => str(value.kind) && str(value.apiVersion))
      .map((value) => ({ file, kind: str(value.kind)!, name: str(obj(value.metadata).name) ?? '', value })),
  );
}

const matches = (selector: Obj, labels: Obj) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
const spec = (o: K8sObject) => obj(o.value.spec);
const podLabels = (d: K8sObject) => obj(obj(obj(spec(d).template).metadata).labels);
const podSpec = (d: K8sObject) => obj(obj(spec(d).template).spec);
const containersOf = (d: K8sObject) => arr(podSpec(d).containers).map(obj);
const labelSelector = (o: K8sObject) => obj(obj(spec(o).selector).matchLabels);

class K8sModel {
  readonly problems: string[] = [];
  /** Worker Deployment → the generate queues it consumes. */
  readonly workerQueues = new Map<string, string[]>();
  /** URLs the containers connect to, for the Service check. */
  readonly urls: { at: string; host: string; port: number }[] = [];

  constructor(readonly objects: K8sObject[]) {}

  of(kind: string): K8sObject[] {
    return this.objects.filter((o) => o.kind === kind);
  }

  find(kind: string, name: string): K8sObject | undefined {
    return this.objects.find((o) => o.kind === kind && o.name === name);
  }

  /** A ConfigMap's or Secret's entries (Secret data decoded), or null when no manifest defines it. */
  data(kind: 'ConfigMap' | 'Secret', name: string): Map<string, string> | null {
    const o = this.find(kind, name);
    if (!o) return null;
    const data = new Map<string, string>();
    for (const [k, v] of Object.entries(obj(o.value.data))) {
      data.set(k, kind === 'Secret' ? Buffer.from(String(v), 'base64').toString('utf8') : String(v));
    }
    for (const [k, v] of Object.entries(obj(o.value.stringData))) data.set(k, String(v));
    return data;
  }

  ports(d: K8sObject): { name: string | undefined; port: number }[] {
    return containersOf(d).flatMap((c) =>
      arr(c.ports).map((p) => ({ name: str(obj(p).name), port: Number(obj(p).containerPort) })),
    );
  }

  /** A port given by name or number, among a Deployment's container ports. */
  hasPort(d: K8sObject, port: unknown): boolean {
    return this.ports(d).some((p) => (typeof port === 'number' ? p.port === port : p.name === port));
  }

  selected(selector: Obj): K8sObject[] {
    return this.of('Deployment').filter((d) => matches(selector, podLabels(d)));
  }
}

function checkK8s(objects: K8sObject[]): string[] {
  const model = new K8sModel(objects);
  checkK8sObjects(model);
  for (const d of model.of('Deployment')) checkDeployment(model, d);
  checkK8sReferences(model);
  checkAutoscalers(model);
  return [...new Set(model.problems)];
}

/** Names, namespace, the kustomization's resources. */
function checkK8sObjects(model: K8sModel): void {
  const p = model.problems;
  for (const o of model.objects) {
    if (o.kind === 'Kustomization') continue;
    if (!o.name) p.push(`${o.file}: a ${o.kind} without metadata.name`);
    if (o.kind !== 'Namespace' && obj(o.value.metadata).namespace !== 'llmq') {
      p.push(`${o.file}: ${o.kind} ${o.name}: namespace must be llmq`);
    }
  }
  const kustomization = model.of('Kustomization')[0];
  if (!kustomization) p.push(`${K8S_DIR}: no kustomization.yaml`);
  const resources = arr(kustomization?.value.resources).map(String);
  for (const r of resources) {
    if (!isFile(posix.join(K8S_DIR, r))) p.push(`${K8S_DIR}/kustomization.yaml: ${r} does not exist`);
  }
  for (const o of model.objects) {
    const applied = resources.includes(posix.relative(K8S_DIR, o.file));
    if (applied && o.kind === 'Secret')
      p.push(`${o.file}: example Secrets must not be applied by the kustomization`);
    if (applied && ['ScaledObject', 'HorizontalPodAutoscaler'].includes(o.kind)) {
      p.push(`${o.file}: autoscalers are applied one kind at a time, not by the kustomization`);
    }
  }
}

/** The container's environment: envFrom, then env, resolved through the manifests. */
function k8sEnv(model: K8sModel, container: Obj, at: string): Map<string, string | null> {
  const env = new Map<string, string | null>();
  for (const from of arr(container.envFrom).map(obj)) {
    const kind = from.configMapRef ? 'ConfigMap' : 'Secret';
    const ref = obj(from.configMapRef ?? from.secretRef);
    const data = model.data(kind, str(ref.name) ?? '');
    if (!data && ref.optional !== true)
      model.problems.push(`${at}: envFrom ${kind} ${str(ref.name)}: no manifest defines it`);
    for (const [k, v] of data ?? []) env.set(k, v);
  }
  for (const e of arr(container.env).map(obj)) {
    const name = str(e.name) ?? '';
    const from = obj(e.valueFrom);
    const ref = obj(from.secretKeyRef ?? from.configMapKeyRef);
    if (!isObj(e.valueFrom)) {
      env.set(name, str(e.value) ?? '');
    } else if (!str(ref.name)) {
      env.set(name, null);
    } else {
      const kind = from.secretKeyRef ? 'Secret' : 'ConfigMap';
      const value = model.data(kind, str(ref.name)!)?.get(str(ref.key) ?? '');
      if (value === undefined && ref.optional !== true) {
        model.problems.push(
          `${at}: ${name}: ${kind} ${str(ref.name)} key ${str(ref.key)}: no manifest defines it`,
        );
      }
      env.set(name, value ?? null);
    }
  }
  return env;
}

/** The text of a file at a path in the container, through its ConfigMap volumes. */
function k8sMounted(
  model: K8sModel,
  d: K8sObject,
  container: Obj,
  path: string,
): { text: string; from: string } | string {
  const volumes = arr(podSpec(d).volumes).map(obj);
  for (const m of arr(container.volumeMounts).map(obj)) {
    const target = str(m.mountPath) ?? '';
    if (!path.startsWith(`${target}/`)) continue;
    const cm = obj(volumes.find((v) => v.name === m.name)?.configMap);
    const data = model.data('ConfigMap', str(cm.name) ?? '');
    if (!data) return `volume ${str(m.name)} is not a ConfigMap that the manifests define`;
    const rest = path.slice(target.length + 1);
    const items = arr(cm.items).map(obj);
    const key = items.length ? str(items.find((i) => i.path === rest)?.key) : rest;
    const text = key === undefined ? undefined : data.get(key);
    return text === undefined
      ? `ConfigMap ${str(cm.name)} puts nothing at ${rest}`
      : { text, from: `ConfigMap ${str(cm.name)}` };
  }
  return 'no volumeMount holds it';
}

function checkDeployment(model: K8sModel, d: K8sObject): void {
  const p = model.problems;
  const at = `${d.file}: Deployment ${d.name}`;
  const pod = podSpec(d);
  if (!matches(labelSelector(d), podLabels(d))) p.push(`${at}: its selector does not match its pod labels`);
  const volumes = arr(pod.volumes).map(obj);
  for (const v of volumes.filter((x) => x.configMap)) {
    const cm = obj(v.configMap);
    const data = model.data('ConfigMap', str(cm.name) ?? '');
    if (!data) p.push(`${at}: volume ${str(v.name)}: ConfigMap ${str(cm.name)}: no manifest defines it`);
    for (const key of arr(cm.items).map((i) => str(obj(i).key) ?? '')) {
      if (data && !data.has(key))
        p.push(`${at}: volume ${str(v.name)}: ConfigMap ${str(cm.name)} has no key ${key}`);
    }
  }
  const annotatedPort = str(obj(obj(obj(spec(d).template).metadata).annotations)['prometheus.io/port']);
  if (annotatedPort && !model.hasPort(d, Number(annotatedPort))) {
    p.push(`${at}: annotation prometheus.io/port ${annotatedPort} is not a containerPort`);
  }
  for (const container of containersOf(d)) {
    const cat = `${at}, container ${str(container.name)}`;
    if (!str(container.image)) p.push(`${cat}: no image`);
    if (!isObj(obj(container.resources).requests)) p.push(`${cat}: no resources.requests`);
    for (const m of arr(container.volumeMounts).map(obj)) {
      if (!volumes.some((v) => v.name === m.name)) p.push(`${cat}: volumeMount ${str(m.name)} has no volume`);
    }
    const env = k8sEnv(model, container, cat);
    const role = ROLES.find((r) => r === env.get('ROLE'));
    if (!role) {
      p.push(`${cat}: ROLE must be one of ${ROLES.join(', ')}`);
      continue;
    }
    const checked = checkContainer({
      file: d.file,
      where: `Deployment ${d.name}`,
      role,
      env,
      mounted: (path) => k8sMounted(model, d, container, path),
    });
    p.push(...checked.problems);
    checkContainerRuntime(model, d, container, checked, cat);
    for (const { name, url } of urlsOf(checked.raw)) {
      const t = urlTarget(url);
      if (t) model.urls.push({ at: `${cat}: ${name}`, ...t });
    }
    for (const b of checked.backends)
      model.urls.push({ at: `${cat}: ${b.what}`, host: b.host, port: b.port });
    if (role === 'worker') model.workerQueues.set(d.name, consumedQueues(checked.parsed));
  }
}

/** Ports declared and listened on, probes, the grace period. */
function checkContainerRuntime(
  model: K8sModel,
  d: K8sObject,
  container: Obj,
  checked: Checked,
  cat: string,
): void {
  const p = model.problems;
  const declared = arr(container.ports).map((x) => Number(obj(x).containerPort));
  for (const port of checked.ports)
    if (!declared.includes(port)) p.push(`${cat}: listens on ${port}; no containerPort says so`);
  for (const port of declared) {
    if (!checked.ports.includes(port))
      p.push(`${cat}: containerPort ${port}, but it listens on ${checked.ports.join(', ') || 'nothing'}`);
  }
  const httpGet = (probe: string) => obj(obj(container[probe]).httpGet);
  for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
    if (!container[probe]) {
      if (probe !== 'startupProbe') p.push(`${cat}: no ${probe}`);
    } else if (!model.hasPort(d, httpGet(probe).port)) {
      p.push(`${cat}: ${probe} port ${String(httpGet(probe).port)} is not a containerPort`);
    }
  }
  const role = checked.raw.ROLE;
  if (str(httpGet('livenessProbe').path) !== '/health') p.push(`${cat}: liveness must be GET /health`);
  if (role === 'api' && str(httpGet('readinessProbe').path) !== '/ready')
    p.push(`${cat}: the API's readiness is GET /ready`);
  const preStop = arr(obj(obj(obj(container.lifecycle).preStop).exec).command).map(String);
  const stopMs = checked.stopMs + (preStop[0] === 'sleep' ? Number(preStop[1]) * 1000 : 0);
  const grace = Number(podSpec(d).terminationGracePeriodSeconds ?? 30);
  if (grace * 1000 < stopMs)
    p.push(`${cat}: terminationGracePeriodSeconds ${grace} is shorter than its drain (${stopMs / 1000} s)`);
}

/** Services, the URLs that name them, the Ingress, PDBs, PodMonitors, tiers without consumers. */
function checkK8sReferences(model: K8sModel): void {
  const p = model.problems;
  const services = model.of('Service');
  for (const s of services) {
    const targets = model.selected(obj(spec(s).selector));
    if (targets.length === 0) p.push(`${s.file}: Service ${s.name} selects no Deployment`);
    for (const port of arr(spec(s).ports).map(obj)) {
      for (const d of targets.filter((t) => !model.hasPort(t, port.targetPort ?? port.port))) {
        p.push(
          `${s.file}: Service ${s.name}: targetPort ${String(port.targetPort ?? port.port)} is not a port of ${d.name}`,
        );
      }
    }
  }
  for (const u of model.urls) {
    const svc = services.find((s) => s.name === u.host.split('.')[0]);
    const ports = arr(spec(svc ?? ({ value: {} } as K8sObject)).ports).map((x) => Number(obj(x).port));
    if (!svc && !u.host.includes('.')) p.push(`${u.at}: no Service named ${u.host}`);
    if (svc && !ports.includes(u.port))
      p.push(`${u.at}: ${u.host}:${u.port}, but Service ${svc.name} has ports ${ports.join(', ')}`);
  }
  for (const ing of model.of('Ingress')) {
    for (const path of arr(spec(ing).rules).flatMap((r) => arr(obj(obj(r).http).paths).map(obj))) {
      const ref = obj(obj(path.backend).service);
      const port = obj(ref.port);
      const svc = services.find((s) => s.name === str(ref.name));
      const ok = arr(spec(svc ?? ({ value: {} } as K8sObject)).ports).some((x) =>
        port.name ? obj(x).name === port.name : obj(x).port === port.number,
      );
      if (!ok)
        p.push(
          `${ing.file}: Ingress ${ing.name}: backend ${str(ref.name)} port ${str(port.name ?? port.number)} does not exist`,
        );
    }
  }
  const pdbs = model.of('PodDisruptionBudget');
  for (const pdb of pdbs) {
    if (model.selected(labelSelector(pdb)).length === 0)
      p.push(`${pdb.file}: PodDisruptionBudget ${pdb.name} selects no Deployment`);
  }
  for (const d of model.of('Deployment')) {
    const role = containersOf(d).map(
      (c) =>
        arr(c.env)
          .map(obj)
          .find((e) => e.name === 'ROLE')?.value,
    )[0];
    if (
      (role === 'api' || role === 'worker') &&
      !pdbs.some((pdb) => matches(labelSelector(pdb), podLabels(d)))
    ) {
      p.push(`${d.file}: Deployment ${d.name} has no PodDisruptionBudget`);
    }
  }
  for (const pm of model.of('PodMonitor')) {
    const targets = model.selected(labelSelector(pm));
    if (targets.length === 0) p.push(`${pm.file}: PodMonitor ${pm.name} selects no Deployment`);
    for (const ep of arr(spec(pm).podMetricsEndpoints).map(obj)) {
      for (const d of targets.filter((t) => !model.hasPort(t, ep.port))) {
        p.push(`${pm.file}: PodMonitor ${pm.name}: port ${str(ep.port)} is not a port of ${d.name}`);
      }
    }
  }
  const consumed = [...model.workerQueues.values()].flat();
  for (const q of Object.values(GENERATE_QUEUES)) {
    if (!consumed.includes(q)) p.push(`${K8S_DIR}: no worker Deployment consumes the ${q} queue`);
  }
}

/** KEDA and the HPA alternative: each worker Deployment scaled on the backlog of its own queue. */
function checkAutoscalers(model: K8sModel): void {
  const p = model.problems;
  const adapterMetrics = new Set<string>();
  for (const file of filesUnder(K8S_DIR, /\.ya?ml$/)) {
    for (const rule of readYaml(file, []).flatMap((v) => arr(obj(v.rules).external).map(obj))) {
      const as = str(obj(rule.name).as) ?? '';
      adapterMetrics.add(as);
      p.push(
        ...checkPromQL(`${str(rule.seriesQuery)} ${str(rule.metricsQuery)}`, `${file}: adapter rule ${as}`),
      );
    }
  }
  const queueIn = (text: string | undefined) => /queue\s*=\s*"?([\w-]+)"?/.exec(text ?? '')?.[1];
  const scalers = [...model.of('ScaledObject'), ...model.of('HorizontalPodAutoscaler')];
  for (const so of scalers) {
    const at = `${so.file}: ${so.kind} ${so.name}`;
    const target = str(obj(spec(so).scaleTargetRef).name) ?? '';
    const queues = model.workerQueues.get(target);
    if (!queues) p.push(`${at}: scaleTargetRef ${target} is not a worker Deployment`);
    const watch = (queue: string | undefined) => {
      if (!queue || !queues?.includes(queue))
        p.push(`${at}: watches queue ${queue}, ${target} consumes ${queues?.join(', ')}`);
    };
    for (const t of arr(spec(so).triggers).map(obj)) {
      const md = obj(t.metadata);
      const query = str(md.query) ?? '';
      if (t.type !== 'prometheus') p.push(`${at}: trigger type ${str(t.type)}, expected prometheus`);
      p.push(...checkPromQL(query, at));
      if (!/waiting/.test(query) || !/prioritized/.test(query))
        p.push(`${at}: the query must count waiting and prioritized jobs`);
      if (!(Number(md.threshold) > 0))
        p.push(`${at}: threshold ${str(md.threshold)} is not a positive number`);
      if (!urlTarget(str(md.serverAddress) ?? '')) p.push(`${at}: serverAddress is not a URL`);
      watch(queueIn(query));
    }
    for (const m of arr(spec(so).metrics)
      .map(obj)
      .filter((x) => x.type === 'External')) {
      const metric = obj(obj(m.external).metric);
      if (!adapterMetrics.has(str(metric.name) ?? ''))
        p.push(`${at}: no prometheus-adapter rule serves ${str(metric.name)}`);
      watch(str(obj(obj(metric.selector).matchLabels).queue));
    }
    if (so.kind === 'ScaledObject' && arr(spec(so).triggers).length === 0) p.push(`${at}: no triggers`);
  }
  for (const worker of model.workerQueues.keys()) {
    for (const kind of ['ScaledObject', 'HorizontalPodAutoscaler']) {
      if (!model.of(kind).some((s) => obj(spec(s).scaleTargetRef).name === worker))
        p.push(`${K8S_DIR}: no ${kind} scales ${worker}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------

function assertNone(problems: string[]): void {
  if (problems.length > 0) throw new Error(`${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
}

function loadCompose(problems: string[] = []): Obj {
  return readYaml(COMPOSE_FILE, problems)[0] ?? {};
}

function loadK8s(problems: string[] = []): K8sObject[] {
  return readK8s(problems);
}

describe('deployment files', () => {
  it('infra/Dockerfile: node:20-bookworm-slim, non-root, health, stop signal, ports, runtime files', () => {
    const problems = checkDockerfile('infra/Dockerfile', '.');
    const roles = entrypointRoles();
    for (const role of ROLES)
      if (!roles.has(role)) problems.push(`infra/docker/entrypoint.sh: starts no ROLE ${role}`);
    assertNone(problems);
  });

  it('docker-compose.yml and the LB, Prometheus and Grafana files match the apps they run', () => {
    const problems: string[] = [];
    const compose = loadCompose(problems);
    assertNone([...problems, ...checkCompose(compose)]);
  });

  it('every Kubernetes manifest parses and matches the apps it runs', () => {
    const problems: string[] = [];
    const objects = loadK8s(problems);
    expect(objects.length).toBeGreaterThan(0);
    assertNone([...problems, ...checkK8s(objects)]);
  });
});

describe('the checks catch', () => {
  it('a variable no schema knows, and a value the schema refuses', () => {
    const compose = structuredClone(loadCompose());
    const env = obj(obj(obj(compose.services)['worker-batch']).environment);
    env.WORKER_QUEUE = 'batch';
    env.WORKER_BATCH_CONCURRENCY = 'lots';
    const problems = checkCompose(compose);
    expect(problems).toContainEqual(
      expect.stringMatching(/^docker-compose\.yml: service worker-batch: WORKER_QUEUE is not a setting/),
    );
    expect(problems).toContainEqual(
      expect.stringMatching(/^docker-compose\.yml: service worker-batch: WORKER_BATCH_CONCURRENCY: .*"lots"/),
    );
  });

  it('a load balancer and a scrape job that send where nothing listens', () => {
    const compose = structuredClone(loadCompose());
    obj(obj(obj(compose.services).api).environment).PORT = '3100';
    const problems = checkCompose(compose);
    expect(problems).toContainEqual(
      expect.stringMatching(/^infra\/haproxy\/haproxy\.cfg: .*api:3000, but api listens on 3100/),
    );
    expect(problems).toContainEqual(
      expect.stringMatching(/^infra\/prometheus\/prometheus\.yml: job llmq-api: api:3000/),
    );
  });

  it('a missing providers file and a Secret key no manifest defines', () => {
    const compose = structuredClone(loadCompose());
    obj(obj(compose.services).api).volumes = ['./infra/missing.yaml:/etc/llmq/providers.yaml:ro'];
    expect(checkCompose(compose)).toContainEqual(
      expect.stringMatching(
        /^docker-compose\.yml: service api: PROVIDERS_FILE \/etc\/llmq\/providers\.yaml: infra\/missing\.yaml does not exist/,
      ),
    );
    const objects = structuredClone(loadK8s());
    const secret = objects.find((o) => o.kind === 'Secret' && o.name === 'llmq-datastores')!;
    delete obj(secret.value.stringData).DATABASE_URL;
    expect(checkK8s(objects)).toContainEqual(
      expect.stringMatching(
        /^infra\/k8s\/api\.yaml: Deployment llmq-api: DATABASE_URL: required, but not set/,
      ),
    );
  });

  it('a probe on a port the container does not declare, and a grace period shorter than the drain', () => {
    const objects = structuredClone(loadK8s());
    const api = objects.find((o) => o.kind === 'Deployment' && o.name === 'llmq-api')!;
    const container = containersOf(api)[0]!;
    obj(obj(container.readinessProbe).httpGet).port = 'metrics';
    podSpec(api).terminationGracePeriodSeconds = 5;
    const problems = checkK8s(objects);
    expect(problems).toContainEqual(
      expect.stringMatching(
        /^infra\/k8s\/api\.yaml: Deployment llmq-api, container api: readinessProbe port metrics/,
      ),
    );
    expect(problems).toContainEqual(expect.stringMatching(/terminationGracePeriodSeconds 5 is shorter/));
  });

  it('an autoscaler that watches the other tier’s queue, or a metric nobody exports', () => {
    const objects = structuredClone(loadK8s());
    const so = objects.find((o) => o.kind === 'ScaledObject' && o.name === 'llmq-worker-batch')!;
    const md = obj(obj(arr(spec(so).triggers)[0]).metadata);
    md.query = String(md.query)
      .replace('"generate-batch"', '"generate"')
      .replace('llmq_queue_jobs', 'llmq_jobs');
    const problems = checkK8s(objects);
    expect(problems).toContainEqual(
      expect.stringMatching(
        /^infra\/k8s\/autoscaling\/keda\.yaml: ScaledObject llmq-worker-batch: watches queue generate,/,
      ),
    );
    expect(problems).toContainEqual(
      expect.stringMatching(/llmq_jobs is not a metric of packages\/observability/),
    );
  });
});
