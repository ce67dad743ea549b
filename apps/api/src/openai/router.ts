import { Router, type RequestHandler, type Response } from 'express';
import { refuseRevoked } from '../auth';
import type { ApiDeps } from '../deps';
import { batchesRouter } from './batches';
import { chatCompletionsRouter } from './chat';
import { embeddingsRouter } from './embeddings';
import { openAiErrorHandler, openAiRouteNotFound } from './errors';
import { filesRouter } from './files';
import { modelsRouter } from './models';
import { responsesRouter } from './responses';

/**
 * The OpenAI-compatible API under `/v1`: the official SDKs and anything built on them (LangChain,
 * LlamaIndex...) work unchanged with `baseURL` pointed here. Every generation is still a queued
 * job (priorities, limits, cache, fleet), visible at `/api/jobs/:id` too. Errors come in
 * OpenAI's shape.
 */
export function openAiRouter(deps: ApiDeps, streams: Set<Response>, auth: RequestHandler): Router {
  const router = Router();
  router.use(auth);
  // Chat completions and embeddings only admit work, and their admission call checks the
  // revocation marker itself (as /api/generate): no second round trip on the hot path.
  router.use(chatCompletionsRouter(deps, streams));
  router.use(embeddingsRouter(deps));
  router.use(refuseRevoked(deps.redis, deps.apiKeys, deps.limiter.prefix));
  router.use(responsesRouter(deps, streams));
  router.use(modelsRouter(deps));
  router.use(filesRouter(deps));
  router.use(batchesRouter(deps));
  router.use(openAiRouteNotFound);
  router.use(openAiErrorHandler(deps.logger));
  return router;
}
