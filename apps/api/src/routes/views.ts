import type { JobView } from '@llmq/contracts';
import type { JobRecord } from '@llmq/db';

export const jobPaths = (jobId: string) => ({
  pollUrl: `/api/jobs/${jobId}`,
  streamUrl: `/api/jobs/${jobId}/stream`,
});

export function toJobView(job: JobRecord): JobView {
  return {
    jobId: job.id,
    status: job.status,
    model: job.model,
    priority: job.priority,
    createdAt: job.createdAt.toISOString(),
    startedAt: job.startedAt?.toISOString() ?? null,
    completedAt: job.completedAt?.toISOString() ?? null,
    attempts: job.attempts,
    result: job.result,
    finishReason: job.finishReason,
    usage: job.usage,
    servedModel: job.servedModel,
    costUsd: job.costUsd,
    error: job.error,
    metadata: job.metadata,
    sources: job.sources,
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
/** Anything that is not a UUID cannot be a job id; it gets the same 404 as an unknown id. */
export const isJobId = (id: string) => UUID.test(id);
