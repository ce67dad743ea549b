import { bearerMatches, exposition } from '@llmq/observability';
import { Router, type RequestHandler } from 'express';
import { authenticate, refuseRevoked } from '../auth';
import type { ApiDeps } from '../deps';
import { HttpError, serviceUnavailable } from '../errors';
import { ScalingProbe } from '../scaling';

/**
 * `GET /metrics` (Prometheus; open unless METRICS_TOKEN is set) and `GET /api/metrics/scaling`
 * (the autoscaler's view: queue counts, workers, pressure and advice), which takes an API key or
 * the admin token, so an autoscaler can hold either.
 */
export function metricsRouter(deps: ApiDeps): Router {
  const router = Router();
  const token = deps.metricsEnv.METRICS_TOKEN ?? null;
  router.get('/metrics', async (req, res) => {
    if (token && !bearerMatches(req.headers.authorization, token)) {
      throw new HttpError(401, 'unauthorized', 'metrics need the metrics token (METRICS_TOKEN)', {
        headers: { 'WWW-Authenticate': 'Bearer realm="llmq-metrics"' },
      });
    }
    const { contentType, body } = await exposition(deps.metrics.registry);
    res.set('Content-Type', contentType).set('Cache-Control', 'no-store').send(body);
  });

  const { producer } = deps;
  const env = deps.metricsEnv;
  const probe = new ScalingProbe(
    () => [producer.queueFor('interactive'), producer.queueFor('batch'), producer.queue('ingest')],
    {
      scaleUpPressure: env.SCALE_UP_QUEUE_PRESSURE,
      scaleUpWaiting: env.SCALE_UP_WAITING,
      scaleDownMaxActive: env.SCALE_DOWN_MAX_ACTIVE,
    },
  );
  router.get('/api/metrics/scaling', adminOrKey(deps), async (_req, res) => {
    if (deps.redis.status !== 'ready')
      throw serviceUnavailable('the job queue is unavailable; retry shortly');
    const report = await probe.current().catch((err: unknown) => {
      deps.logger.warn({ err }, 'could not read the queues for the scaling report');
      throw serviceUnavailable('the job queue is unavailable; retry shortly');
    });
    res.set('Cache-Control', 'no-store').json(report);
  });
  return router;
}

/** The admin token (when configured) or a valid, unrevoked API key. */
function adminOrKey(deps: ApiDeps): RequestHandler {
  const admin = deps.settings.adminToken;
  const key = authenticate(deps.apiKeys);
  const revoked = refuseRevoked(deps.redis, deps.apiKeys, deps.limiter.prefix);
  return async (req, res, next) => {
    if (admin && bearerMatches(req.headers.authorization, admin)) return next();
    await key(req, res, (err?: unknown) => {
      if (err) return next(err);
      Promise.resolve(revoked(req, res, next)).catch(next);
    });
  };
}
