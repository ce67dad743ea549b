// The image's HEALTHCHECK: GET /health of the role's own listener. Kubernetes does not use it
// (its probes are in infra/k8s); docker and compose do.
//   api        HOST:PORT (default 3000)
//   simulator  SIM_HOST:SIM_PORT (default 8081)
//   worker     METRICS_HOST:METRICS_PORT (default 9464), its metrics server; METRICS_PORT=0 picks
//              a free port, so there is nothing fixed to ask and a running process is all.
const env = process.env;
const target = {
  api: { host: env.HOST, port: env.PORT || '3000' },
  simulator: { host: env.SIM_HOST, port: env.SIM_PORT || '8081' },
  worker: { host: env.METRICS_HOST, port: env.METRICS_PORT || '9464' },
}[env.ROLE];

if (target === undefined) {
  console.error(`healthcheck: unknown ROLE "${env.ROLE}"`);
  process.exit(1);
}
if (target.port === '0') process.exit(0);

// A wildcard address (or none) is reached on loopback.
const host = !target.host || ['0.0.0.0', '::', '[::]'].includes(target.host) ? '127.0.0.1' : target.host;
const url = `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${target.port}/health`;
const abort = new AbortController();
setTimeout(() => abort.abort(), 2500).unref();
fetch(url, { signal: abort.signal })
  .then((res) => {
    if (!res.ok) console.error(`healthcheck: ${url} answered ${res.status}`);
    process.exit(res.ok ? 0 : 1);
  })
  .catch((error) => {
    console.error(`healthcheck: ${url}: ${error.message}`);
    process.exit(1);
  });
