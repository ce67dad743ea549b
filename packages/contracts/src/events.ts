import type { JobError, JobStatus, Usage } from './job';

/**
 * Events of one job's stream. Every event has a per-job sequence number (`seq`, from 1, no
 * gaps), which is the SSE `id`, so `Last-Event-ID` resumes exactly after the last one seen.
 *
 * A `status` event with `restarted: true` means an earlier attempt was cut (a worker died) and
 * the text starts over: a client drops the text it assembled so far.
 */
export type JobEventBody =
  | {
      type: 'status';
      status: JobStatus;
      attempt?: number;
      restarted?: boolean;
      retryInMs?: number;
      error?: JobError;
    }
  | { type: 'token'; text: string }
  | {
      type: 'completed';
      result: string;
      finishReason: string | null;
      usage: Usage | null;
      /** Present when the answer came from the cache: which layer. */
      source?: 'redis' | 'postgres' | 'semantic';
    }
  | { type: 'failed'; error: JobError }
  | { type: 'cancelled'; reason: string };

export type JobEventType = JobEventBody['type'];
export type JobEvent = JobEventBody & { seq: number };

export const TERMINAL_EVENT_TYPES: ReadonlySet<JobEventType> = new Set(['completed', 'failed', 'cancelled']);
export function isTerminalEvent(event: { type: JobEventType }): boolean {
  return TERMINAL_EVENT_TYPES.has(event.type);
}
