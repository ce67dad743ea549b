import express, { type Express, type Response } from 'express';
import { requestLog } from './request-log';
import { authenticate, refuseRevoked } from './auth';
import type { ApiDeps } from './deps';
import { problemHandler, routeNotFound } from './errors';
import { generateRouter } from './routes/generate';
import { adminRouter } from './routes/admin';
import { healthRouter } from './routes/health';
import { jobsRouter } from './routes/jobs';
import { usageRouter } from './routes/usage';
import { collectionsRouter } from './routes/collections';

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

  app.use(healthRouter(deps, () => draining));
  app.use(adminRouter(deps, deps.settings.adminToken));
  const api = express.Router();
  api.use(authenticate(deps.apiKeys));
  // Submissions check revocation inside their admission call; every other route checks here.
  api.use(generateRouter(deps));
  api.use(refuseRevoked(deps.redis, deps.apiKeys, deps.limiter.prefix));
  api.use(jobsRouter(deps, streams));
  api.use(usageRouter(deps));
  api.use(collectionsRouter(deps));
  app.use('/api', api);
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
