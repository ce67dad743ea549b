import { generationSpecSchema } from '@llmq/contracts';
import type { JobsOptions } from 'bullmq';
import { z } from 'zod';

/**
 * The one catalog of jobs: name → payload schema, queue and retry policy, used by the API
 * (producer) and the worker (consumer) alike so the two cannot drift.
 */
export const JOB_CATALOG = {
  generate: {
    queue: 'generate',
    payload: z.object({
      jobId: z.uuid(),
      tenantId: z.string(),
      spec: generationSpecSchema,
      /** Where to store the answer in the response cache, when it may be stored. */
      cache: z
        .object({ key: z.string(), scope: z.string(), embedding: z.array(z.number()).max(8192).optional() })
        .optional(),
    }),
    options: {
      attempts: 3,
      backoff: { type: 'exponential', delay: 1000 },
      // The job row in Postgres is the record; BullMQ keeps only a short tail.
      removeOnComplete: { age: 3600, count: 1000 },
      removeOnFail: { age: 24 * 3600, count: 5000 },
    } satisfies JobsOptions,
  },
} as const;

export type JobName = keyof typeof JOB_CATALOG;
export type JobPayload<N extends JobName> = z.infer<(typeof JOB_CATALOG)[N]['payload']>;
