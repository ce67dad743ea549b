/** When the fleet should grow or shrink (SCALE_UP_QUEUE_PRESSURE, SCALE_UP_WAITING, SCALE_DOWN_MAX_ACTIVE). */
export interface ScalingThresholds {
  scaleUpPressure: number;
  scaleUpWaiting: number;
  scaleDownMaxActive: number;
}

/** One queue's counts, as the scaling endpoint shows them. */
export interface QueueCounts {
  waiting: number;
  active: number;
  delayed: number;
  completed: number;
  failed: number;
}

export type Advice = 'scale_up' | 'scale_down' | 'hold';

export interface ScalingReport {
  /** All queues together (generate, generate-batch, ingest): the work of the worker fleet. */
  queue: QueueCounts;
  /** Worker processes consuming at least one of the queues. */
  workers: number;
  scaling: {
    /** Waiting jobs per worker (per one, when there is none). */
    queuePressure: number;
    /** failed / (completed + failed), over the jobs BullMQ still keeps. */
    failureRate: number;
    shouldScaleUp: boolean;
    shouldScaleDown: boolean;
    advice: Advice;
    reason: string;
    thresholds: ScalingThresholds;
  };
  queues: Array<QueueCounts & { name: string; workers: number }>;
  measuredAt: string;
}

/**
 * The scaling advice of the seed article (scale on queue depth per worker, not CPU: workers wait
 * on the network), with one case it missed: jobs waiting and no worker at all is a scale-up
 * whatever the thresholds. Delayed jobs wait for provider capacity or a backoff; more workers
 * would not run them sooner, so they do not count.
 */
export function advise(
  counts: { waiting: number; active: number; workers: number },
  t: ScalingThresholds,
): { queuePressure: number; advice: Advice; reason: string } {
  const { waiting, active, workers } = counts;
  const queuePressure = round(waiting / Math.max(workers, 1));
  const result = (advice: Advice, reason: string) => ({ queuePressure, advice, reason });
  if (waiting > 0 && workers === 0)
    return result('scale_up', `${waiting} jobs wait and no worker consumes them`);
  if (queuePressure > t.scaleUpPressure) {
    return result(
      'scale_up',
      `queue pressure ${queuePressure} (waiting jobs per worker) is above ${t.scaleUpPressure}`,
    );
  }
  if (waiting > t.scaleUpWaiting)
    return result('scale_up', `${waiting} jobs wait, more than ${t.scaleUpWaiting}`);
  if (waiting === 0 && active < t.scaleDownMaxActive && workers > 0) {
    return result('scale_down', `no job waits and ${active} run (fewer than ${t.scaleDownMaxActive})`);
  }
  if (workers === 0) return result('hold', 'no job waits and no worker runs');
  return result(
    'hold',
    waiting === 0 ? `no job waits; ${active} run` : `queue pressure ${queuePressure} is within limits`,
  );
}

export function scalingReport(
  queues: Array<QueueCounts & { name: string; workers: number }>,
  workers: number,
  thresholds: ScalingThresholds,
  now = new Date(),
): ScalingReport {
  const sum = (k: keyof QueueCounts) => queues.reduce((n, q) => n + q[k], 0);
  const queue: QueueCounts = {
    waiting: sum('waiting'),
    active: sum('active'),
    delayed: sum('delayed'),
    completed: sum('completed'),
    failed: sum('failed'),
  };
  const { queuePressure, advice, reason } = advise({ ...queue, workers }, thresholds);
  return {
    queue,
    workers,
    scaling: {
      queuePressure,
      failureRate: round(queue.failed / Math.max(queue.completed + queue.failed, 1)),
      shouldScaleUp: advice === 'scale_up',
      shouldScaleDown: advice === 'scale_down',
      advice,
      reason,
      thresholds,
    },
    queues,
    measuredAt: now.toISOString(),
  };
}

const round = (n: number) => Math.round(n * 1000) / 1000;

/** BullMQ's Queue, as far as the probe reads it. */
export interface ScalableQueue {
  readonly name: string;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
  getWorkers(): Promise<Array<Record<string, string>>>;
}

/**
 * Reads the queues' counts and their workers (BullMQ's `getWorkers`: Redis CLIENT LIST) at most
 * once per `ttlMs`, so autoscalers polling many API replicas cannot load Redis with CLIENT LIST.
 */
export class ScalingProbe {
  private last: { at: number; report: ScalingReport } | null = null;
  private pending: Promise<ScalingReport> | null = null;

  constructor(
    private readonly queues: () => ScalableQueue[],
    private readonly thresholds: ScalingThresholds,
    private readonly ttlMs = 1000,
  ) {}

  async current(): Promise<ScalingReport> {
    if (this.last && performance.now() - this.last.at < this.ttlMs) return this.last.report;
    this.pending ??= this.measure().finally(() => {
      this.pending = null;
    });
    return this.pending;
  }

  private async measure(): Promise<ScalingReport> {
    const queues = this.queues();
    const [counts, clients] = await Promise.all([
      Promise.all(
        queues.map((q) =>
          q.getJobCounts('wait', 'prioritized', 'paused', 'active', 'delayed', 'completed', 'failed'),
        ),
      ),
      Promise.all(queues.map((q) => q.getWorkers())),
    ]);
    // A process consuming several queues has a connection on each: count processes, by worker name.
    const processes = new Set<string>();
    const rows = queues.map((q, i) => {
      const c = counts[i] ?? {};
      const list = (clients[i] ?? []).filter((w) => w.rawname !== undefined);
      for (const w of list) processes.add(workerIdentity(w));
      return {
        name: q.name,
        waiting: (c.wait ?? 0) + (c.prioritized ?? 0) + (c.paused ?? 0),
        active: c.active ?? 0,
        delayed: c.delayed ?? 0,
        completed: c.completed ?? 0,
        failed: c.failed ?? 0,
        workers: list.length,
      };
    });
    const report = scalingReport(rows, processes.size, this.thresholds);
    this.last = { at: performance.now(), report };
    return report;
  }
}

/** Named workers (`…:w:<host>:<pid>`) are one process across queues; unnamed ones count per connection. */
function workerIdentity(client: Record<string, string>): string {
  const raw = client.rawname ?? '';
  const at = raw.indexOf(':w:');
  return at >= 0 ? `name:${raw.slice(at + 3)}` : `id:${client.id ?? raw}`;
}
