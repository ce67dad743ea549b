/**
 * Group commit: callers submit items one at a time; items that arrive while a flush is in
 * flight are written together by the next flush. An idle system flushes at once (no timer, no
 * added latency); a busy one writes in batches of up to `maxBatch`, one round trip each.
 */
export class GroupCommitter<T, R> {
  private pending: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
  private inFlight = 0;

  /**
   * @param flush writes a batch and returns one result per item, in order.
   * @param maxBatch largest batch per flush. @defaultValue 256
   * @param maxConcurrentFlushes flushes allowed at once. @defaultValue 2
   */
  constructor(
    private readonly flush: (items: T[]) => Promise<R[]>,
    private readonly maxBatch = 256,
    private readonly maxConcurrentFlushes = 2,
  ) {}

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.drain();
    });
  }

  private drain(): void {
    while (this.pending.length > 0 && this.inFlight < this.maxConcurrentFlushes) {
      const batch = this.pending.splice(0, this.maxBatch);
      this.inFlight++;
      this.flush(batch.map((b) => b.item))
        .then(
          (results) => {
            if (results.length !== batch.length)
              throw new Error('group commit returned a result count mismatch');
            batch.forEach((b, i) => b.resolve(results[i] as R));
          },
          (error: unknown) => batch.forEach((b) => b.reject(error)),
        )
        .catch((error: unknown) => batch.forEach((b) => b.reject(error)))
        .finally(() => {
          this.inFlight--;
          this.drain();
        });
    }
  }
}
