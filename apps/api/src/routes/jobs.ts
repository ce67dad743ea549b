import { isTerminal, type JobEvent } from '@llmq/contracts';
import type { JobRecord } from '@llmq/db';
import { Router, type Request, type Response } from 'express';
import type { ApiDeps } from '../deps';
import { HttpError, notFound, serviceUnavailable } from '../errors';
import { isJobId, toJobView } from './views';

export function jobsRouter(deps: ApiDeps, streams: Set<Response>): Router {
  const { jobs, events, hub, redis, producer, cancels, settings } = deps;
  const router = Router();

  /** Loads the caller's job; another tenant's job is a 404, exactly like an unknown id. */
  async function ownJob(req: Request): Promise<JobRecord> {
    const id = String(req.params.id);
    if (!isJobId(id)) throw notFound();
    const job = await jobs.getForTenant(id, req.principal!.tenantId);
    if (!job) throw notFound();
    req.log = req.log.child({ jobId: job.id });
    return job;
  }

  router.get('/jobs/:id', async (req, res) => {
    res.json(toJobView(await ownJob(req)));
  });

  router.get('/jobs/:id/stream', async (req, res) => {
    const job = await ownJob(req);
    const lastEventId = parseLastEventId(req);
    const stored = job.events;
    if (!stored && redis.status !== 'ready')
      throw serviceUnavailable('the event stream is unavailable; retry shortly');

    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no'); // nginx: do not buffer the stream
    res.flushHeaders();
    res.write('retry: 2000\n\n');

    if (stored) {
      // A finished job replays from Postgres, so resuming works long after Redis dropped the stream.
      for (const e of stored) if (e.seq > lastEventId) res.write(formatEvent(e));
      res.end();
      return;
    }
    streams.add(res);
    deps.metrics.sseConnections.inc();
    let stop: (() => void) | null = null;
    const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), settings.sseHeartbeatMs);
    const finish = () => {
      clearInterval(heartbeat);
      stop?.();
      if (streams.delete(res)) deps.metrics.sseConnections.dec();
      if (!res.writableEnded) res.end();
    };
    req.on('close', finish);
    try {
      stop = await hub.follow(job.id, lastEventId, (event) => {
        res.write(formatEvent(event));
        if (event.type === 'completed' || event.type === 'failed' || event.type === 'cancelled') finish();
      });
      if (res.writableEnded) stop();
      else if (isTerminal(job.status)) {
        // Finished, but its events were never stored and Redis no longer has them: send the outcome.
        if (!(await events.exists(job.id))) {
          res.write(formatEvent(synthesizeTerminal(job, lastEventId + 1)));
          finish();
        }
      }
    } catch (error) {
      req.log.warn({ err: error }, 'stream follow failed');
      res.write(`event: error\ndata: ${JSON.stringify({ code: 'stream_unavailable' })}\n\n`);
      finish();
    }
  });

  router.delete('/jobs/:id', async (req, res) => {
    const job = await ownJob(req);
    if (job.status === 'cancelled') return res.json(toJobView(job));
    if (isTerminal(job.status)) {
      throw new HttpError(409, 'job_not_cancellable', `the job is already ${job.status}`);
    }
    if (redis.status !== 'ready') throw serviceUnavailable('the job queue is unavailable; retry shortly');
    const previous = await jobs.cancel(job.id, job.tenantId);
    if (previous === null) {
      const now = await jobs.getForTenant(job.id, job.tenantId);
      if (now?.status === 'cancelled') return res.json(toJobView(now));
      throw new HttpError(409, 'job_not_cancellable', `the job is already ${now?.status ?? 'gone'}`);
    }
    let removed = false;
    if (previous === 'queued') {
      // A waiting job is taken out of the queue; one a worker has just locked cannot be, so it is aborted.
      removed = await producer
        .queueFor(job.priority)
        .remove(job.id)
        .then((n) => n === 1)
        .catch(() => false);
    }
    if (!removed) await cancels.publish(redis, job.id);
    // A cancelled job is charged nothing and frees its tenant's slot now (a worker that was
    // running it finds it charged already).
    await deps.accounting
      .finish(job.tenantId, {
        jobId: job.id,
        model: job.model,
        backendId: null,
        promptTokens: 0,
        completionTokens: 0,
        costUsd: 0,
        latencyMs: null,
        ttftMs: null,
        cacheStatus: 'miss',
        outcome: 'cancelled',
      })
      .catch((err: unknown) => req.log.warn({ err }, 'could not account a cancelled job'));
    req.log.info({ tenant: job.tenantId, previous, removedFromQueue: removed }, 'job cancelled');
    await events.append(job.id, { type: 'cancelled', reason: 'cancelled by the client' });
    await jobs.storeEvents(job.id, await events.read(job.id));
    const after = await jobs.getForTenant(job.id, job.tenantId);
    res.json(toJobView(after ?? job));
  });

  return router;
}

function parseLastEventId(req: Request): number {
  const raw =
    req.get('Last-Event-ID') ??
    (typeof req.query.lastEventId === 'string' ? req.query.lastEventId : undefined);
  if (raw === undefined || raw === '') return 0;
  if (!/^\d{1,15}$/.test(raw)) {
    throw new HttpError(400, 'invalid_last_event_id', 'Last-Event-ID must be a non-negative integer', {
      field: 'Last-Event-ID',
    });
  }
  return Number(raw);
}

export function formatEvent(event: JobEvent): string {
  return `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

function synthesizeTerminal(job: JobRecord, seq: number): JobEvent {
  switch (job.status) {
    case 'completed':
      return {
        seq,
        type: 'completed',
        result: job.result ?? '',
        finishReason: job.finishReason,
        usage: job.usage,
      };
    case 'failed':
      return { seq, type: 'failed', error: job.error ?? { code: 'failed', message: 'the job failed' } };
    case 'cancelled':
      return { seq, type: 'cancelled', reason: 'cancelled' };
    case 'queued':
    case 'in_progress':
      throw new Error(`job ${job.id} is not finished`);
  }
}
