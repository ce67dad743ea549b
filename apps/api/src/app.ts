import express, { type Express, type Response } from 'express';
import { requestLog } from './request-log';
import { httpMetrics } from './metrics';
import { authenticate, refuseRevoked } from './auth';
import type { ApiDeps } from './deps';
import { problemHandler, routeNotFound } from './errors';
import { generateRouter } from './routes/generate';
import { adminRouter } from './routes/admin';
import { queueDashboardRouter } from './routes/queue-dashboard';
import { healthRouter } from './routes/health';
import { metricsRouter } from './routes/metrics';
import { jobsRouter } from './routes/jobs';
import { usageRouter } from './routes/usage';
import { collectionsRouter } from './routes/collections';
import { conversationsRouter } from './routes/conversations';
import { openAiRouter } from './openai/router';

export interface ApiApp {
  app: Express;
  /** Open SSE responses, so shutdown can end them. */
  streams: Set<Response>;
  /** Marks the process as draining: /ready answers 503 so load balancers move away. */
  startDraining(): void;
}

export function createApp(deps: ApiDeps): ApiApp {
  const app = express();
  const streams = new Set<Response>();
  let draining = false;
  app.disable('x-powered-by');
  app.set('trust proxy', deps.settings.trustProxy);
  app.set('etag', false);

  app.use(requestLog(deps.logger));

  const http = httpMetrics(deps.metrics);
  app.use(http.middleware);
  // Active requests for /ready: open SSE streams are cheap and long, so they do not count.
  const activeRequests = () => http.inFlight() - streams.size;
  app.use(healthRouter(deps, () => draining, activeRequests));
  app.use(metricsRouter(deps));
  // Before the other admin routes: their bearer-only guard would refuse a browser.
  if (deps.settings.adminToken) app.use(queueDashboardRouter(deps, deps.settings.adminToken));
  app.use(adminRouter(deps, deps.settings.adminToken));
  const auth = authenticate(deps.apiKeys);
  const api = express.Router();
  api.use(auth);
  // Submissions check revocation inside their admission call; every other route checks here.
  api.use(generateRouter(deps));
  api.use(refuseRevoked(deps.redis, deps.apiKeys, deps.limiter.prefix));
  api.use(jobsRouter(deps, streams));
  api.use(usageRouter(deps));
  api.use(collectionsRouter(deps));
  api.use(conversationsRouter(deps));
  app.use('/api', api);
  app.use('/v1', openAiRouter(deps, streams, auth));
  app.use(routeNotFound);
  app.use(problemHandler(deps.logger));
  return {
    app,
    streams,
    startDraining: () => {
      draining = true;
    },
  };
}
