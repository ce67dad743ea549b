import { generateRequestSchema, type AcceptedJob, type JobStatus } from '@llmq/contracts';
import { Router, json, type Response } from 'express';
import type { ApiDeps } from '../deps';
import { HttpError, fromZod } from '../errors';
import { submitGeneration } from '../submissions';
import { jobPaths } from './views';

export function generateRouter(deps: ApiDeps): Router {
  const router = Router();
  const parseJson = json({ limit: deps.settings.bodyLimitBytes, strict: true });

  router.post(
    '/generate',
    (req, _res, next) => {
      if (!req.is('application/json')) {
        throw new HttpError(415, 'unsupported_media_type', 'Content-Type must be application/json');
      }
      next();
    },
    parseJson,
    async (req, res) => {
      const parsed = generateRequestSchema.safeParse(req.body);
      if (!parsed.success) throw fromZod(parsed.error);
      const result = await submitGeneration(deps, req.principal!, req.log, {
        body: parsed.data,
        idempotencyKey: req.get('Idempotency-Key'),
        cacheControl: req.get('Cache-Control'),
        semanticCache: req.get('LLMQ-Semantic-Cache'),
        onAdmitted: (headers) => res.set(headers),
      });
      // The job id on every later line of this request, the access log's included.
      req.log = req.log.child({ jobId: result.jobId });
      switch (result.kind) {
        case 'cached': {
          // Answered from the cache: recorded as a completed job, so poll and stream work as usual.
          const paths = jobPaths(result.jobId);
          const { entry, source, similarity } = result.hit;
          res
            .status(200)
            .location(paths.pollUrl)
            .json({
              jobId: result.jobId,
              status: 'completed',
              ...paths,
              result: entry.result,
              finishReason: entry.finishReason,
              usage: entry.usage,
              source,
              ...(similarity !== undefined ? { similarity } : {}),
            });
          return;
        }
        case 'replayed':
          res.setHeader('Idempotent-Replayed', 'true');
          return accepted(res, result.jobId, result.status);
        case 'queued':
          return accepted(res, result.jobId, 'queued');
      }
    },
  );
  return router;
}

function accepted(res: Response, jobId: string, status: JobStatus) {
  const paths = jobPaths(jobId);
  const body: AcceptedJob = { jobId, status, ...paths };
  res.status(202).location(paths.pollUrl).json(body);
}
