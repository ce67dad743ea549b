import { PRIORITIES, type Priority } from '@llmq/contracts';
import type { JobRepository } from '@llmq/db';
import { keys, type Producer, type Redis } from '@llmq/queue';
import type { Logger } from 'pino';
import { PeriodicPass } from './periodic';

export interface ReconcilerOptions {
  jobs: JobRepository;
  producer: Producer;
  redis: Redis;
  logger: Logger;
  prefix: string;
  /** @defaultValue 30000 */
  intervalMs: number;
  /** Jobs younger than this are still on their normal path. @defaultValue 30000 */
  graceMs: number;
  /** Jobs looked at per tier and pass, oldest first. @defaultValue 500 */
  batchSize?: number;
}

/**
 * Postgres is the record, Redis the dispatcher: a job accepted (row written, 202 sent) but
 * missing from the queue (Redis lost its data, or an enqueue was never confirmed) is enqueued
 * again, into the queue of its priority. Only one process of the fleet runs a pass at a time (a
 * Redis lock), whichever queues that process consumes.
 */
export class Reconciler extends PeriodicPass {
  constructor(private readonly options: ReconcilerOptions) {
    super(options.intervalMs, (err) => options.logger.warn({ err }, 'reconcile pass failed'));
  }

  /** One pass; returns how many jobs were re-enqueued. */
  protected async pass(): Promise<number> {
    const { jobs, producer, redis, logger, prefix } = this.options;
    const lockKey = keys.lock(prefix, 'reconciler');
    const token = `${process.pid}:${Date.now()}`;
    const got = await redis.set(lockKey, token, 'PX', Math.max(this.options.intervalMs, 5000), 'NX');
    if (got !== 'OK') return 0;
    try {
      const cutoff = new Date(Date.now() - this.options.graceMs);
      // Each tier on its own: a large queued batch must not hide a lost interactive job.
      const limit = this.options.batchSize ?? 500;
      const candidates = (
        await Promise.all(PRIORITIES.map((p) => jobs.findUnfinished(cutoff, limit, p)))
      ).flat();
      let requeued = 0;
      for (const c of candidates) {
        if (await this.isQueued(c.id, c.priority)) continue;
        await producer.enqueue('generate', c.id, {
          jobId: c.id,
          tenantId: c.tenantId,
          spec: c.spec,
          priority: c.priority,
        });
        requeued++;
      }
      if (requeued > 0) logger.warn({ requeued }, 'reconciler re-enqueued jobs missing from the queue');
      return requeued;
    } finally {
      // Release only our own lock.
      await redis.eval(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        1,
        lockKey,
        token,
      );
    }
  }

  /**
   * Whether BullMQ still holds the job. Its own tier's queue is asked first; the other tiers only
   * for a job missing there, so a job that was enqueued to another queue than its row says (by an
   * older API, say) is not run a second time.
   */
  private async isQueued(jobId: string, priority: Priority): Promise<boolean> {
    const order = [priority, ...PRIORITIES.filter((p) => p !== priority)];
    for (const p of order) {
      if (await this.options.producer.queueFor(p).getJob(jobId)) return true;
    }
    return false;
  }
}
