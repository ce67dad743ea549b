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

  queue(name: JobName): Queue {
    const queueName = JOB_CATALOG[name].queue;
    let queue = this.queues.get(queueName);
    if (!queue) {
      queue = new Queue(queueName, { connection: this.options.connection, prefix: this.prefix });
      queue.on('error', () => undefined);
      this.queues.set(queueName, queue);
    }
    return queue;
  }

  /** Adds a job; adding an id that is already queued is a no-op, which makes re-enqueueing safe. */
  async enqueue<N extends JobName>(name: N, jobId: string, payload: JobPayload<N>): Promise<void> {
    const entry = JOB_CATALOG[name];
    const data = entry.payload.parse(payload);
    await this.queue(name).add(name, data, { ...entry.options, jobId });
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
