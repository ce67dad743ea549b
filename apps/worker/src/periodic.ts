/**
 * A background pass run every `intervalMs` after the previous one ended, never two at once in a
 * process. A failed pass is reported and the next one runs as planned; `stop()` waits for the
 * pass under way, so a draining worker does not exit in the middle of one.
 */
export abstract class PeriodicPass {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<number> | null = null;

  constructor(
    private readonly intervalMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  start(): void {
    const tick = () => {
      this.runOnce()
        .catch(this.onError)
        .finally(() => {
          if (this.timer !== null) this.timer = setTimeout(tick, this.intervalMs);
        });
    };
    this.timer = setTimeout(tick, this.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  /** One pass now (or the one under way); resolves with what the pass counts. */
  runOnce(): Promise<number> {
    this.running ??= this.pass().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  protected abstract pass(): Promise<number>;
}
