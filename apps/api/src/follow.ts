import { isTerminal, isTerminalEvent, type JobEvent } from '@llmq/contracts';
import type { JobRecord } from '@llmq/db';
import type { Response } from 'express';
import type { ApiDeps } from './deps';
import { serviceUnavailable } from './errors';

/**
 * Delivers a job's events with seq > afterSeq, in order, to any transport (SSE, the OpenAI
 * facade, WebSocket), ending with its terminal event. A finished job replays from Postgres, so
 * resuming works long after Redis dropped its stream; a live one is followed through the
 * process's event hub. Resolves once following; the returned function stops early.
 * Throws a 503 {@link HttpError} while the live stream is unreachable.
 */
export async function followJob(
  deps: Pick<ApiDeps, 'hub' | 'events' | 'redis'>,
  job: JobRecord,
  afterSeq: number,
  onEvent: (event: JobEvent) => void,
): Promise<() => void> {
  if (job.events) {
    for (const e of job.events) if (e.seq > afterSeq) onEvent(e);
    return () => undefined;
  }
  if (deps.redis.status !== 'ready')
    throw serviceUnavailable('the event stream is unavailable; retry shortly');
  let ended = false;
  let stop: (() => void) | null = null;
  stop = await deps.hub.follow(job.id, afterSeq, (event) => {
    if (ended) return;
    if (isTerminalEvent(event)) {
      ended = true;
      stop?.(); // null while the backlog is delivered; stopped below then
    }
    onEvent(event);
  });
  if (ended) {
    stop();
    return stop;
  }
  if (isTerminal(job.status)) {
    const exists = await deps.events.exists(job.id).catch((error: unknown) => {
      stop?.();
      throw error;
    });
    if (!exists) {
      // Finished, but its events were never stored and Redis no longer has them: send the outcome.
      stop();
      ended = true;
      onEvent(synthesizeTerminal(job, afterSeq + 1));
    }
  }
  return stop;
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

/** Starts `res` as a server-sent event stream: status, headers that keep proxies from buffering it, flushed. */
export function startEventStream(res: Response): void {
  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  res.setHeader('Cache-Control', 'no-cache, no-transform');
  res.setHeader('Connection', 'keep-alive');
  res.setHeader('X-Accel-Buffering', 'no'); // nginx: do not buffer the stream
  res.flushHeaders();
}
