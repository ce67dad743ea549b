import { DEFAULT_PRIORITY, type Priority } from '@llmq/contracts';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { JOB_CATALOG, type JobName, type JobPayload } from './catalog';

export interface ProducerOptions {
  connection: Redis;
  /** Key prefix of every queue, so several deployments (or tests) can share one Redis. @defaultValue "llmq" */
  prefix?: string;
}

/** Enqueues catalogued jobs. The job's own id (a UUID) is the BullMQ job id, never BullMQ's counter. */
export class Producer {
  private readonly queues = new Map<string, Queue>();
  readonly prefix: string;

  constructor(private readonly options: ProducerOptions) {
    this.prefix = options.prefix ?? 'llmq';
  }

  /** The queue of a job name and priority tier. @defaultValue priority "interactive" */
  queue(name: JobName, priority: Priority = DEFAULT_PRIORITY): Queue {
    const queueName = JOB_CATALOG[name].queues[priority];
    let queue = this.queues.get(queueName);
    if (!queue) {
      queue = new Queue(queueName, { connection: this.options.connection, prefix: this.prefix });
      queue.on('error', () => undefined);
      this.queues.set(queueName, queue);
    }
    return queue;
  }

  /** The generate queue of a priority tier (where a job of that priority waits). */
  queueFor(priority: Priority): Queue {
    return this.queue('generate', priority);
  }

  /**
   * Adds a job to the queue of its `priority` (interactive when absent); adding an id that is
   * already queued there is a no-op, which makes re-enqueueing safe.
   */
  async enqueue<N extends JobName>(name: N, jobId: string, payload: JobPayload<N>): Promise<void> {
    const entry = JOB_CATALOG[name];
    const data = entry.payload.parse(payload);
    await this.queue(name, data.priority).add(name, data, { ...entry.options, jobId });
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
