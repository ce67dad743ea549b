/**
 * Batches token deltas that arrive within `windowMs` into one event, and keeps appends in order
 * (each waits for the previous one). With a window of 0, each delta goes out on the next tick.
 */
export class TokenCoalescer {
  private buffer = '';
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown = null;

  constructor(
    private readonly windowMs: number,
    private readonly emit: (text: string) => Promise<unknown>,
  ) {}

  push(text: string): void {
    this.buffer += text;
    if (this.timer === null) this.timer = setTimeout(() => this.flushBuffer(), this.windowMs);
  }

  private flushBuffer(): void {
    this.timer = null;
    if (this.buffer === '') return;
    const text = this.buffer;
    this.buffer = '';
    this.chain = this.chain.then(() =>
      this.emit(text).then(
        () => undefined,
        (error: unknown) => {
          this.failure ??= error;
        },
      ),
    );
  }

  /** Sends whatever is buffered and waits for every append; rethrows the first append failure. */
  async flush(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.flushBuffer();
    await this.chain;
    if (this.failure !== null) throw this.failure;
  }

  /** Drops anything buffered (the attempt was abandoned). */
  discard(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.buffer = '';
  }
}
