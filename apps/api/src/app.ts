import { randomUUID } from 'node:crypto';
import express, { type Express, type Response } from 'express';
import { pinoHttp } from 'pino-http';
import { authenticate } from './auth';
import type { ApiDeps } from './deps';
import { problemHandler, routeNotFound } from './errors';
import { generateRouter } from './routes/generate';
import { healthRouter } from './routes/health';
import { jobsRouter } from './routes/jobs';

export interface ApiApp {
  app: Express;
  /** Open SSE responses, so shutdown can end them. */
  streams: Set<Response>;
  /** Marks the process as draining: /ready answers 503 so load balancers move away. */
  startDraining(): void;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function createApp(deps: ApiDeps): ApiApp {
  const app = express();
  const streams = new Set<Response>();
  let draining = false;
  app.disable('x-powered-by');
  app.set('trust proxy', deps.settings.trustProxy);
  app.set('etag', false);

  app.use(
    pinoHttp({
      logger: deps.logger,
      genReqId: (req, res) => {
        const incoming = req.headers['x-request-id'];
        const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      autoLogging: { ignore: (req) => req.url === '/health' || req.url === '/ready' },
      customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'debug'),
      serializers: {
        req: (req: { id: string; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
    }),
  );

  app.use(healthRouter(deps, () => draining));
  const api = express.Router();
  api.use(authenticate(deps.apiKeys));
  api.use(generateRouter(deps));
  api.use(jobsRouter(deps, streams));
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
