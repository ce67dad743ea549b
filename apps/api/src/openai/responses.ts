import type { JobRecord } from '@llmq/db';
import { Router, type Request, type Response } from 'express';
import { cancelJob } from '../cancel';
import type { ApiDeps } from '../deps';
import { HttpError, fromZod, serviceUnavailable } from '../errors';
import { followJob } from '../follow';
import { jobErrorToOpenAi } from './errors';
import { abandonJob, jsonBody, submitJob, waitForEnd } from './jobs';
import { ResponseEventStream, jobIdOf, toResponse, type ResponseEvent } from './response-events';
import { responseCreateSchema, responseToGenerateRequest } from './responses-schema';
import { openSse, watchClient } from './sse';

/**
 * OpenAI's Responses API over llmq jobs, background mode first: `POST /responses` with
 * `background: true` answers at once with the queued response (`resp_<jobId>`); `GET
 * /responses/:id` polls it, or with `stream=true&starting_after=N` streams it from after event N;
 * `POST /responses/:id/cancel` cancels it. Without `background`, the call waits for (or streams)
 * the answer and a client that leaves cancels the job. Another tenant's id is a 404, like an
 * unknown one.
 */
export function responsesRouter(deps: ApiDeps, streams: Set<Response>): Router {
  const router = Router();

  async function ownResponse(req: Request): Promise<JobRecord> {
    const id = String(req.params.id);
    const jobId = jobIdOf(id);
    const job = jobId ? await deps.jobs.getForTenant(jobId, req.principal!.tenantId) : null;
    if (!job) throw new HttpError(404, 'not_found', `Response with id '${id}' not found.`);
    req.log = req.log.child({ jobId: job.id });
    return job;
  }

  router.post('/responses', ...jsonBody(deps), async (req, res) => {
    const client = watchClient(res);
    const parsed = responseCreateSchema.safeParse(req.body);
    if (!parsed.success) throw fromZod(parsed.error);
    const body = parsed.data;
    const background = body.background === true;
    const { job, cancelOnDisconnect } = await submitJob(deps, req, res, responseToGenerateRequest(body));
    if (!background && cancelOnDisconnect) client.onGone(() => abandonJob(deps, job, req.log));
    if (client.gone) return;
    if (body.stream === true) return streamResponse(deps, streams, req, res, job, -1);
    if (background) {
      res.json({ ...toResponse(job), background });
      return;
    }
    const end = await waitForEnd(deps, job, client);
    if (end === null) return;
    if (end.type === 'failed') {
      const { status, body: error, headers } = jobErrorToOpenAi(end.error);
      res.status(status).set(headers).json(error);
      return;
    }
    // The record is final before the terminal event is published.
    const final = (await deps.jobs.getForTenant(job.id, job.tenantId)) ?? job;
    res.json({ ...toResponse(final), background });
  });

  router.get('/responses/:id', async (req, res) => {
    const job = await ownResponse(req);
    if (req.query.stream === 'true') {
      return streamResponse(deps, streams, req, res, job, startingAfter(req));
    }
    res.json(toResponse(job));
  });

  router.post('/responses/:id/cancel', async (req, res) => {
    const job = await ownResponse(req);
    try {
      res.json(toResponse(await cancelJob(deps, job, req.log)));
    } catch (error) {
      // OpenAI's words for a response that has already ended.
      if (error instanceof HttpError && error.code === 'job_not_cancellable') {
        throw new HttpError(400, 'response_not_cancellable', `Cannot cancel a ${job.status} response.`);
      }
      throw error;
    }
  });

  return router;
}

/** `starting_after`: the sequence number of the last event the client has; -1 for none. */
function startingAfter(req: Request): number {
  const raw = req.query.starting_after;
  if (raw === undefined || raw === '') return -1;
  if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)) {
    throw new HttpError(400, 'invalid_value', 'starting_after must be a non-negative integer', {
      field: 'starting_after',
    });
  }
  return Number(raw);
}

/**
 * Streams a response's events with `sequence_number` > `after`. The events are derived from the
 * job's whole event stream every time, so a resumed stream continues exactly where the first
 * one stopped, on any replica, while the job runs or long after it ended.
 */
async function streamResponse(
  deps: ApiDeps,
  streams: Set<Response>,
  req: Request,
  res: Response,
  job: JobRecord,
  after: number,
): Promise<void> {
  if (!job.events && deps.redis.status !== 'ready') {
    throw serviceUnavailable('the event stream is unavailable; retry shortly');
  }
  const events = new ResponseEventStream(job);
  let stop: (() => void) | null = null;
  const sse = openSse(deps, res, streams, { onClose: () => stop?.() });
  const send = (list: ResponseEvent[]) => {
    for (const e of list) if (e.sequence_number > after) sse.send(e, e.type);
    if (events.ended) sse.end();
  };
  send(events.opening());
  try {
    stop = await followJob(deps, job, 0, (event) => {
      if (!sse.closed) send(events.next(event));
    });
    if (sse.closed) stop();
    // A stored stream ends with its terminal event; if it somehow did not, do not hang.
    else if (job.events) sse.end();
  } catch (error) {
    // Nothing to number an error event with: the stream ends, and the client resumes it.
    req.log.warn({ err: error }, 'response stream follow failed');
    sse.end();
  }
}
