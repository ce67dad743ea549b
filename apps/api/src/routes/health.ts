import { Router } from 'express';
import type { ApiDeps } from '../deps';

/**
 * Liveness (the process answers) and readiness: its Redis and Postgres answer, it is not
 * draining, and it is not overloaded (READY_MAX_ACTIVE_REQUESTS, READY_MAX_EVENT_LOOP_LAG_MS).
 * A 503 says why, so a load balancer moves new work to another replica until it recovers.
 */
export function healthRouter(
  deps: ApiDeps,
  isDraining: () => boolean,
  /** Requests being answered now, SSE streams and probes left out. */
  activeRequests: () => number,
): Router {
  const router = Router();
  const { READY_MAX_ACTIVE_REQUESTS: maxActive, READY_MAX_EVENT_LOOP_LAG_MS: maxLag } = deps.metricsEnv;
  router.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/ready', async (_req, res) => {
    const withTimeout = <T>(p: Promise<T>) =>
      Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 1000))]).catch(
        () => false,
      );
    const [redis, postgres] = await Promise.all([
      deps.redis.status === 'ready' ? withTimeout(deps.redis.ping()) : Promise.resolve(false),
      withTimeout(deps.pool.query('SELECT 1')),
    ]);
    const draining = isDraining();
    const active = activeRequests();
    const lag = Math.round(deps.metrics.eventLoop.lagMs());
    const reasons: string[] = [];
    if (draining) reasons.push('draining: the process is shutting down');
    if (!redis) reasons.push('redis is not reachable');
    if (!postgres) reasons.push('postgres is not reachable');
    // At the limit already counts: a replica that is full should get no more.
    if (maxActive > 0 && active >= maxActive) {
      reasons.push(`${active} requests in progress (READY_MAX_ACTIVE_REQUESTS ${maxActive})`);
    }
    if (maxLag > 0 && lag > maxLag) {
      reasons.push(`event loop lag ${lag} ms (READY_MAX_EVENT_LOOP_LAG_MS ${maxLag})`);
    }
    const overloaded = (maxActive > 0 && active >= maxActive) || (maxLag > 0 && lag > maxLag);
    const ok = reasons.length === 0;
    if (!ok) res.setHeader('Retry-After', '1');
    const status = ok
      ? 'ready'
      : draining
        ? 'draining'
        : !redis || !postgres
          ? 'unavailable'
          : overloaded
            ? 'overloaded'
            : 'unavailable';
    res.status(ok ? 200 : 503).json({
      status,
      redis,
      postgres,
      activeRequests: active,
      eventLoopLagMs: lag,
      ...(ok ? {} : { reasons }),
    });
  });
  return router;
}
