import type { Redis } from 'ioredis';
import { keys } from './keys';

/**
 * Cancellation across the fleet: the API publishes a job id; the worker holding that job
 * aborts its upstream request. Workers register an AbortController per running job.
 */
export class CancelBus {
  private readonly running = new Map<string, AbortController>();

  constructor(private readonly prefix = 'llmq') {}

  async publish(redis: Redis, jobId: string): Promise<void> {
    await redis.publish(keys.cancelChannel(this.prefix), jobId);
  }

  /** Listens on a dedicated subscriber connection (worker side). */
  async listen(subscriber: Redis): Promise<void> {
    const channel = keys.cancelChannel(this.prefix);
    subscriber.on('message', (ch: string, jobId: string) => {
      if (ch === channel) this.running.get(jobId)?.abort(new Error('cancelled'));
    });
    await subscriber.subscribe(channel);
  }

  register(jobId: string): AbortController {
    const controller = new AbortController();
    this.running.set(jobId, controller);
    return controller;
  }

  unregister(jobId: string, controller: AbortController): void {
    if (this.running.get(jobId) === controller) this.running.delete(jobId);
  }

  /** Aborts every running job (used when a drain runs out of time). */
  abortAll(reason: string): void {
    for (const c of this.running.values()) c.abort(new Error(reason));
  }
}
