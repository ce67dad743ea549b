/**
 * Batches token deltas into events: the first delta after a quiet spell goes out at once (so
 * time to first token pays no window), later ones within `windowMs` of the last send are joined
 * into one event. Appends stay in order: each waits for the previous one (and for `after`, e.g.
 * the attempt's status event).
 */
export class TokenCoalescer {
  private buffer = '';
  private timer: NodeJS.Timeout | null = null;
  private lastSentAt = -Infinity;
  private chain: Promise<void>;
  private failure: unknown = null;

  constructor(
    private readonly windowMs: number,
    private readonly emit: (text: string) => Promise<unknown>,
    after: Promise<unknown> = Promise.resolve(),
  ) {
    this.chain = after.then(
      () => undefined,
      (error: unknown) => {
        this.failure ??= error;
      },
    );
  }

  push(text: string): void {
    this.buffer += text;
    if (this.timer !== null) return;
    const wait = this.lastSentAt + this.windowMs - performance.now();
    if (wait <= 0) this.send();
    else this.timer = setTimeout(() => this.send(), wait);
  }

  private send(): void {
    this.timer = null;
    if (this.buffer === '') return;
    const text = this.buffer;
    this.buffer = '';
    this.lastSentAt = performance.now();
    this.chain = this.chain.then(() => {
      if (this.failure !== null) return undefined;
      return this.emit(text).then(
        () => undefined,
        (error: unknown) => {
          this.failure ??= error;
        },
      );
    });
  }

  /** Queues another append (e.g. a status event) after everything pushed so far. */
  then(append: () => Promise<unknown>): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.send();
    this.chain = this.chain.then(() =>
      this.failure !== null
        ? undefined
        : append().then(
            () => undefined,
            (error: unknown) => {
              this.failure ??= error;
            },
          ),
    );
  }

  /** Sends whatever is buffered and waits for every append; rethrows the first failure. */
  async flush(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.send();
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
