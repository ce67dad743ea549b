import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@llmq/embedded';
import { spawnService, type ServiceProcess } from './process';

/** Scrape jobs: job name → `host:port` targets (their `/metrics` is scraped). */
export type ScrapeTargets = Record<string, string[]>;

/**
 * The path of a Prometheus tool (`prometheus`, `promtool`), or an error that says how to get it:
 * tests that need one fail loudly rather than skip.
 */
export function prometheusTool(name: 'prometheus' | 'promtool'): string {
  const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (found.status === 0 && found.stdout.trim()) return found.stdout.trim();
  throw new Error(
    `${name} is not installed. \`npm test\` installs it when run as root (scripts/setup.mjs: ` +
      `apt-get install prometheus); otherwise install Debian's "prometheus" package, which ships ` +
      `prometheus and promtool.`,
  );
}

/** A real Prometheus server on a free port, scraping the given targets every second. */
export class PrometheusServer {
  private constructor(
    readonly url: string,
    private readonly process: ServiceProcess,
    private readonly dir: string,
  ) {}

  static async start(targets: ScrapeTargets): Promise<PrometheusServer> {
    const binary = prometheusTool('prometheus');
    const dir = mkdtempSync(join(tmpdir(), 'llmq-prometheus-'));
    writeConfig(dir, targets);
    const port = await freePort();
    const process = await spawnService({
      name: 'prometheus',
      command: binary,
      args: [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1h',
      ],
      ready: /Server is ready to receive web requests/,
    });
    return new PrometheusServer(`http://127.0.0.1:${port}`, process, dir);
  }

  /** Rewrites the scrape configuration and reloads it (SIGHUP), as an operator would. */
  retarget(targets: ScrapeTargets): void {
    writeConfig(this.dir, targets);
    this.process.process.kill('SIGHUP');
  }

  /** An instant query through the HTTP API: the vector's samples. */
  async query(promql: string): Promise<Array<{ metric: Record<string, string>; value: number }>> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data?: {
        resultType: string;
        result: Array<{ metric: Record<string, string>; value: [number, string] }>;
      };
    };
    if (body.status !== 'success' || !body.data) {
      throw new Error(`query ${promql} failed: ${body.error ?? res.status}`);
    }
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  output(): string {
    return this.process.output();
  }

  async stop(): Promise<void> {
    await this.process.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function writeConfig(dir: string, targets: ScrapeTargets): void {
  // JSON is YAML: no YAML writer needed.
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    scrape_configs: Object.entries(targets).map(([job, list]) => ({
      job_name: job,
      metrics_path: '/metrics',
      static_configs: [{ targets: list }],
    })),
  };
  writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
}

/** `promtool check metrics` on an exposition text: whether it passed, and what it said. */
export function promtoolCheckMetrics(text: string): Promise<{ ok: boolean; output: string }> {
  const child = spawn(prometheusTool('promtool'), ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stdin.end(text);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ ok: code === 0, output }));
  });
}
