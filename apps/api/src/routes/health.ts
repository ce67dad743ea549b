import { Router } from 'express';
import type { ApiDeps } from '../deps';

/** Liveness (the process answers) and readiness (its Redis and Postgres answer). */
export function healthRouter(deps: ApiDeps, isDraining: () => boolean): Router {
  const router = Router();
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
    const ok = redis && postgres && !draining;
    if (!ok) res.setHeader('Retry-After', '1');
    res
      .status(ok ? 200 : 503)
      .json({ status: ok ? 'ready' : draining ? 'draining' : 'unavailable', redis, postgres });
  });
  return router;
}
