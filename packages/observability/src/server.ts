import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Whether an `Authorization` header carries `Bearer <token>`; compared in constant time through
 * hashes, so neither content nor length leaks.
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(digest(m[1]!), digest(token));
}

/** The registry in Prometheus' text format, with its content type. */
export async function exposition(registry: Registry): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}

export interface MetricsServerOptions {
  registry: Registry;
  /** @defaultValue "127.0.0.1" */
  host?: string;
  /** 0: any free port. */
  port: number;
  /** When set, `/metrics` needs `Authorization: Bearer <token>`. */
  token?: string | null;
  /** The body of `/health` (always 200: it says the process answers). @defaultValue {status: "ok"} */
  health?: () => object;
}

export interface MetricsServer {
  /** `http://host:port` */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * A small HTTP server for processes that have no other (workers): `GET /metrics` and
 * `GET /health`. A port in use is an error that names the setting to change.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1';
  const server = createServer((req, res) => void handle(options, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'EADDRINUSE'
          ? new Error(`the metrics port ${host}:${options.port} is in use (METRICS_PORT; 0 picks a free one)`)
          : error,
      );
    });
    server.listen(options.port, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(options: MetricsServerOptions, req: IncomingMessage, res: ServerResponse) {
  const path = (req.url ?? '/').split('?')[0];
  const send = (status: number, type: string, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store', ...headers });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return send(405, 'text/plain; charset=utf-8', 'method not allowed\n', { Allow: 'GET, HEAD' });
  }
  if (path === '/health') {
    return send(200, 'application/json', JSON.stringify(options.health?.() ?? { status: 'ok' }));
  }
  if (path !== '/metrics') return send(404, 'text/plain; charset=utf-8', 'not found\n');
  if (options.token && !bearerMatches(req.headers.authorization, options.token)) {
    return send(401, 'text/plain; charset=utf-8', 'metrics need the metrics token\n', {
      'WWW-Authenticate': 'Bearer realm="llmq-metrics"',
    });
  }
  try {
    const { contentType, body } = await exposition(options.registry);
    send(200, contentType, body);
  } catch (error) {
    send(500, 'text/plain; charset=utf-8', `could not collect metrics: ${String(error)}\n`);
  }
}
