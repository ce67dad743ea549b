import { z } from 'zod';
import type { Priority } from './generate';
import type { SourceView } from './rag';

/** Status names follow OpenAI's background mode. */
export const JOB_STATUSES = ['queued', 'in_progress', 'completed', 'failed', 'cancelled'] as const;
export const jobStatusSchema = z.enum(JOB_STATUSES);
export type JobStatus = z.infer<typeof jobStatusSchema>;

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['completed', 'failed', 'cancelled']);
export function isTerminal(status: JobStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

export const usageSchema = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  total_tokens: z.number().int().nonnegative(),
});
export type Usage = z.infer<typeof usageSchema>;

export const jobErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  retryable: z.boolean().optional(),
  status: z.number().int().optional(),
});
export type JobError = z.infer<typeof jobErrorSchema>;

/** The job as `GET /api/jobs/:id` shows it. */
export interface JobView {
  jobId: string;
  status: JobStatus;
  model: string;
  /** The tier the job was queued in. */
  priority: Priority;
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  attempts: number;
  result: string | null;
  finishReason: string | null;
  usage: Usage | null;
  /** The model that answered, when a fallback served the job instead of `model`. */
  servedModel: string | null;
  /** USD, from the provider price table. */
  costUsd: number | null;
  error: JobError | null;
  metadata: Record<string, string> | null;
  /** The chunks a RAG answer was built from, best first; null for jobs without `rag`. */
  sources: SourceView[] | null;
}

/** The body of a `202 Accepted` answer to a submit. */
export interface AcceptedJob {
  jobId: string;
  /** `queued` for a new job; an idempotent replay reports the existing job's status. */
  status: JobStatus;
  pollUrl: string;
  streamUrl: string;
}
