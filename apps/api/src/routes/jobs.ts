import { isTerminalEvent, type JobEvent } from '@llmq/contracts';
import type { JobRecord } from '@llmq/db';
import { Router, type Request, type Response } from 'express';
import type { ApiDeps } from '../deps';
import { cancelJob } from '../cancel';
import { HttpError, notFound, serviceUnavailable } from '../errors';
import { followJob, startEventStream } from '../follow';
import { isJobId, toJobView } from './views';

export function jobsRouter(deps: ApiDeps, streams: Set<Response>): Router {
  const { jobs, redis, settings } = deps;
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
    if (!job.events && redis.status !== 'ready')
      throw serviceUnavailable('the event stream is unavailable; retry shortly');

    startEventStream(res);
    // Nothing is written once the response ended: shutdown ends streams (res.end) while a slow
    // client may still be flushing, and a write after end would be an uncaught stream error.
    const send = (text: string) => {
      if (!res.writableEnded) res.write(text);
    };
    send('retry: 2000\n\n');

    streams.add(res);
    deps.metrics.sseConnections.inc();
    let stop: (() => void) | null = null;
    const heartbeat = setInterval(() => send(': heartbeat\n\n'), settings.sseHeartbeatMs);
    const finish = () => {
      clearInterval(heartbeat);
      stop?.();
      if (streams.delete(res)) deps.metrics.sseConnections.dec();
      if (!res.writableEnded) res.end();
    };
    req.on('close', finish);
    res.on('finish', finish);
    try {
      stop = await followJob(deps, job, lastEventId, (event) => {
        send(formatEvent(event));
        if (isTerminalEvent(event)) finish();
      });
      if (res.writableEnded) stop();
      // A finished job's stored stream may end before its terminal event (resumed past it).
      else if (job.events) finish();
    } catch (error) {
      req.log.warn({ err: error }, 'stream follow failed');
      send(`event: error\ndata: ${JSON.stringify({ code: 'stream_unavailable' })}\n\n`);
      finish();
    }
  });

  router.delete('/jobs/:id', async (req, res) => {
    res.json(toJobView(await cancelJob(deps, await ownJob(req), req.log)));
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
