import type { Priority } from '@llmq/contracts';
import type { Queue } from 'bullmq';

/**
 * Jobs waiting in one priority tier's queue (waiting, prioritized, delayed, paused), measured at
 * most once per `ttlMs` per tier and process, for backpressure. Tiers are measured apart because
 * they are drained apart: a 50,000-line batch must not refuse interactive work. The answer may
 * be up to `ttlMs` old: a burst can pass the limit by what one process admits in that time,
 * never by an unbounded amount.
 */
export class QueueDepth {
  private readonly tiers = new Map<
    Priority,
    { value: number; measuredAt: number; pending: Promise<number> | null }
  >();

  constructor(
    private readonly queueOf: (priority: Priority) => Queue,
    private readonly ttlMs: number,
  ) {}

  async current(priority: Priority): Promise<number> {
    let tier = this.tiers.get(priority);
    if (!tier) {
      tier = { value: 0, measuredAt: -Infinity, pending: null };
      this.tiers.set(priority, tier);
    }
    if (performance.now() - tier.measuredAt < this.ttlMs) return tier.value;
    const t = tier;
    t.pending ??= this.measure(priority)
      .then((value) => {
        t.value = value;
        t.measuredAt = performance.now();
        return value;
      })
      .finally(() => {
        t.pending = null;
      });
    return t.pending;
  }

  private async measure(priority: Priority): Promise<number> {
    const counts = await this.queueOf(priority).getJobCounts('wait', 'paused', 'prioritized', 'delayed');
    return Object.values(counts).reduce((a, b) => a + b, 0);
  }
}
