import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export interface EventLoopMonitorOptions {
  /** Sampling timer of the delay histogram, in ms. @defaultValue 10 */
  resolutionMs?: number;
  /** Length of one measuring window, in ms: {@link EventLoopMonitor.lagMs} is the last full one's. @defaultValue 5000 */
  windowMs?: number;
}

/**
 * Event-loop lag of this process from `perf_hooks.monitorEventLoopDelay`: the 99th percentile of
 * the last full window, less the sampling resolution (an idle loop reads about 0). A window of a
 * few seconds holds hundreds of samples, so one garbage-collection pause does not decide it.
 */
export class EventLoopMonitor {
  private readonly histogram: IntervalHistogram;
  private readonly resolutionMs: number;
  private readonly timer: NodeJS.Timeout;
  private last = 0;

  constructor(options: EventLoopMonitorOptions = {}) {
    this.resolutionMs = options.resolutionMs ?? 10;
    this.histogram = monitorEventLoopDelay({ resolution: this.resolutionMs });
    this.histogram.enable();
    this.timer = setInterval(() => this.roll(), options.windowMs ?? 5000).unref();
  }

  /** The lag of the last full window, in ms. */
  lagMs(): number {
    return this.last;
  }

  stop(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }

  private roll(): void {
    if (this.histogram.count > 0) {
      this.last = Math.max(0, this.histogram.percentile(99) / 1e6 - this.resolutionMs);
    }
    this.histogram.reset();
  }
}
