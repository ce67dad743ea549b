import type { JobEvent, Priority } from '@llmq/contracts';
import type { EventStream } from './event-stream';
import type { Producer } from './producer';

/** Jobs handled per round: their Redis commands go out together, without waiting on each other. */
const CHUNK = 500;

/**
 * Finishes, outside Postgres, jobs already cancelled there in bulk (a batch cancelled or
 * expired): each leaves its queue (best effort: a worker that takes one finds it cancelled and
 * skips it) and its event stream ends with `cancelled`, so whoever follows it (SSE, WebSocket)
 * is told, as `cancelJob` does for one job. `store` receives each chunk's streams for Postgres
 * (`jobs.events`), so a replay after Redis dropped them still ends. Safe to repeat: a stream
 * that has a terminal event already takes no other.
 */
export async function closeCancelledJobs(
  deps: { producer: Producer; events: EventStream },
  priority: Priority,
  jobIds: readonly string[],
  reason: string,
  store: (streams: Map<string, JobEvent[]>) => Promise<void>,
): Promise<void> {
  const queue = deps.producer.queueFor(priority);
  for (let i = 0; i < jobIds.length; i += CHUNK) {
    const chunk = jobIds.slice(i, i + CHUNK);
    await Promise.all(chunk.map((id) => queue.remove(id).catch(() => 0)));
    await Promise.all(chunk.map((id) => deps.events.append(id, { type: 'cancelled', reason })));
    const streams = await Promise.all(chunk.map((id) => deps.events.read(id)));
    await store(new Map(chunk.map((id, k) => [id, streams[k] ?? []])));
  }
}
