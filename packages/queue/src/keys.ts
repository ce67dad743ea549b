/**
 * Redis key layout. The job id is a hash tag (`{...}`), so each job's keys live on one Redis
 * Cluster slot.
 */
export const keys = {
  events: (prefix: string, jobId: string) => `${prefix}:{${jobId}}:events`,
  eventChannel: (prefix: string, jobId: string) => `${prefix}:events:${jobId}`,
  cancelChannel: (prefix: string) => `${prefix}:cancel`,
  lock: (prefix: string, name: string) => `${prefix}:lock:${name}`,
  inflight: (prefix: string, cacheKey: string) => `${prefix}:inflight:${cacheKey}`,
};
