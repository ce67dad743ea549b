import { generateRequestSchema, isTerminalEvent, type GenerateRequest, type JobEvent } from '@llmq/contracts';
import type { JobRecord } from '@llmq/db';
import { json, type Request, type RequestHandler, type Response } from 'express';
import type { Logger } from 'pino';
import { cancelJob } from '../cancel';
import type { ApiDeps } from '../deps';
import { HttpError, fromZod } from '../errors';
import { followJob } from '../follow';
import { submitGeneration, type SubmissionResult } from '../submissions';
import type { ClientWatch } from './sse';

/** A terminal job event: how a job ended. */
export type TerminalEvent = Extract<JobEvent, { type: 'completed' | 'failed' | 'cancelled' }>;

/** JSON bodies only (the SDKs send nothing else), within the API's body limit. */
export function jsonBody(deps: ApiDeps): RequestHandler[] {
  return [
    (req, _res, next) => {
      if (!req.is('application/json')) {
        throw new HttpError(415, 'unsupported_media_type', 'Content-Type must be application/json');
      }
      next();
    },
    json({ limit: deps.settings.bodyLimitBytes, strict: true }),
  ];
}

/**
 * Submits a facade request as a job, exactly as `/api/generate` would (limits, cache,
 * Idempotency-Key, Cache-Control), and returns it with its record. The answer carries the
 * key's rate-limit headers (OpenAI's names among them) and `llmq-job-id`, so the job can be
 * followed at `/api/jobs/:id` too.
 */
export async function submitJob(
  deps: ApiDeps,
  req: Request,
  res: Response,
  body: GenerateRequest,
): Promise<{ submission: SubmissionResult; job: JobRecord; cancelOnDisconnect: boolean }> {
  const principal = req.principal!;
  // The OpenAI body maps onto llmq's own request, whose limits hold too: content parts joined
  // into one message, say, must still fit a message.
  const checked = generateRequestSchema.safeParse(body);
  if (!checked.success) throw fromZod(checked.error);
  const idempotencyKey = req.get('Idempotency-Key');
  const submission = await submitGeneration(deps, principal, req.log, {
    body: checked.data,
    idempotencyKey,
    cacheControl: req.get('Cache-Control'),
    semanticCache: req.get('LLMQ-Semantic-Cache'),
    onAdmitted: (headers) => res.set(headers),
  });
  req.log = req.log.child({ jobId: submission.jobId });
  res.setHeader('llmq-job-id', submission.jobId);
  if (submission.kind === 'replayed') res.setHeader('Idempotent-Replayed', 'true');
  const job = await deps.jobs.getForTenant(submission.jobId, principal.tenantId);
  // The row was written before submitGeneration returned; only a bug gets here.
  if (!job) throw new Error(`job ${submission.jobId} vanished after its submission`);
  // Only a job this request created, and that no retry with the same Idempotency-Key can come
  // back for, is cancelled when its client goes away: a replay, a twin sharing the key, or a
  // retry after a dropped connection must find the job alive.
  const cancelOnDisconnect = submission.kind === 'queued' && idempotencyKey === undefined;
  return { submission, job, cancelOnDisconnect };
}

/** Cancels a job its client gave up on; one that has finished meanwhile is left as it is. */
export function abandonJob(deps: ApiDeps, job: JobRecord, log: Logger): void {
  cancelJob(deps, job, log).then(
    () => log.info('client went away; job cancelled'),
    (err: unknown) => {
      if (err instanceof HttpError && err.code === 'job_not_cancellable') return;
      log.warn({ err }, 'could not cancel a job its client gave up on');
    },
  );
}

/** Waits for a job's end; null when the client went away first. */
export function waitForEnd(
  deps: ApiDeps,
  job: JobRecord,
  client: ClientWatch,
): Promise<TerminalEvent | null> {
  return new Promise((resolve, reject) => {
    let stop: (() => void) | null = null;
    let ended = false;
    client.onGone(() => {
      stop?.();
      resolve(null);
    });
    followJob(deps, job, 0, (event) => {
      if (!isTerminalEvent(event)) return;
      ended = true;
      resolve(event as TerminalEvent);
    }).then((s) => {
      stop = s;
      if (client.gone) s();
      // A stored stream always ends with its terminal event; without one nothing would come.
      else if (job.events && !ended) reject(new Error(`job ${job.id} has a stored stream without an end`));
    }, reject);
  });
}
