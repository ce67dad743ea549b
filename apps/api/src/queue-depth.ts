import type { Queue } from 'bullmq';

/**
 * Jobs waiting in the generate queues (waiting, prioritized, delayed, paused), measured at most
 * once per `ttlMs` per process, for backpressure. The answer may be up to `ttlMs` old: a burst
 * can pass the limit by what one process admits in that time, never by an unbounded amount.
 */
export class QueueDepth {
  private value = 0;
  private measuredAt = -Infinity;
  private pending: Promise<number> | null = null;

  constructor(
    private readonly queues: () => Queue[],
    private readonly ttlMs: number,
  ) {}

  async current(): Promise<number> {
    if (performance.now() - this.measuredAt < this.ttlMs) return this.value;
    this.pending ??= this.measure().finally(() => {
      this.pending = null;
    });
    return this.pending;
  }

  private async measure(): Promise<number> {
    const counts = await Promise.all(
      this.queues().map((q) => q.getJobCounts('wait', 'paused', 'prioritized', 'delayed')),
    );
    this.value = counts.reduce((sum, c) => sum + Object.values(c).reduce((a, b) => a + b, 0), 0);
    this.measuredAt = performance.now();
    return this.value;
  }
}
