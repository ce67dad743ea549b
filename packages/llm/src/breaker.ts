export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerOptions {
  /** Length of the rolling window. @defaultValue 10000 */
  windowMs?: number;
  /** No opening on fewer requests than this in the window. @defaultValue 5 */
  minRequests?: number;
  /** Error ratio in the window that opens the breaker. @defaultValue 0.5 */
  errorRatio?: number;
  /** First open period; doubles on each re-open after a failed probe, up to maxOpenMs. @defaultValue 5000 */
  openMs?: number;
  /** @defaultValue 60000 */
  maxOpenMs?: number;
}

const BUCKETS = 10;

/**
 * A circuit breaker for one backend. Closed: outcomes are counted in a rolling window (10
 * buckets); when the window holds at least `minRequests` and the error ratio reaches
 * `errorRatio`, it opens. Open: nothing goes through until `openMs` passed, then half-open:
 * exactly one probe. Probe success closes it (window cleared); failure re-opens it for twice as
 * long.
 */
export class CircuitBreaker {
  private state: BreakerState = 'closed';
  /** Ring of per-bucket counts; `epoch` says which time slice a slot currently holds. */
  private readonly slots = Array.from({ length: BUCKETS }, () => ({ epoch: -1, ok: 0, failed: 0 }));
  private openedAt = 0;
  private openFor: number;
  private probing = false;
  private readonly o: Required<BreakerOptions>;

  constructor(
    options: BreakerOptions = {},
    private readonly now: () => number = Date.now,
    private readonly onChange: (state: BreakerState) => void = () => undefined,
  ) {
    this.o = {
      windowMs: 10_000,
      minRequests: 5,
      errorRatio: 0.5,
      openMs: 5000,
      maxOpenMs: 60_000,
      ...options,
    };
    this.openFor = this.o.openMs;
  }

  get current(): BreakerState {
    if (this.state === 'open' && this.now() - this.openedAt >= this.openFor) this.transition('half_open');
    return this.state;
  }

  /** Whether a request may go now; in half-open, only the first caller gets the probe. */
  tryAcquire(): boolean {
    switch (this.current) {
      case 'closed':
        return true;
      case 'open':
        return false;
      case 'half_open':
        if (this.probing) return false;
        this.probing = true;
        return true;
    }
  }

  /** When a request could next go: now if available, the end of the open period, or soon for a busy probe. */
  retryAt(now = this.now()): number {
    switch (this.current) {
      case 'closed':
        return now;
      case 'open':
        return this.openedAt + this.openFor;
      case 'half_open':
        return this.probing ? now + 100 : now;
    }
  }

  /** Whether a request could go now (no side effect; for routing decisions). */
  get available(): boolean {
    const s = this.current;
    return s === 'closed' || (s === 'half_open' && !this.probing);
  }

  onSuccess(): void {
    if (this.state === 'half_open') {
      this.probing = false;
      this.openFor = this.o.openMs;
      this.clear();
      this.transition('closed');
      return;
    }
    this.count(true);
  }

  onFailure(): void {
    if (this.state === 'half_open') {
      this.probing = false;
      this.openFor = Math.min(this.openFor * 2, this.o.maxOpenMs);
      this.open();
      return;
    }
    if (this.state === 'open') return;
    this.count(false);
    const epoch = this.epoch();
    let ok = 0;
    let failed = 0;
    for (const slot of this.slots) {
      if (slot.epoch > epoch - BUCKETS) {
        ok += slot.ok;
        failed += slot.failed;
      }
    }
    const total = ok + failed;
    if (total >= this.o.minRequests && failed / total >= this.o.errorRatio) this.open();
  }

  /** The request that took the probe was abandoned (cancelled): let another probe go. */
  release(): void {
    this.probing = false;
  }

  /** An out-of-band sign of life (an active health check): an open breaker goes half-open now. */
  healthy(): void {
    if (this.state === 'open') this.transition('half_open');
  }

  private open(): void {
    this.openedAt = this.now();
    this.transition('open');
  }

  private transition(state: BreakerState): void {
    if (state === this.state) return;
    this.state = state;
    this.onChange(state);
  }

  private epoch(): number {
    return Math.floor(this.now() / (this.o.windowMs / BUCKETS));
  }

  private count(success: boolean): void {
    const epoch = this.epoch();
    const slot = this.slots[epoch % BUCKETS]!;
    if (slot.epoch !== epoch) {
      slot.epoch = epoch;
      slot.ok = 0;
      slot.failed = 0;
    }
    if (success) slot.ok++;
    else slot.failed++;
  }

  private clear(): void {
    for (const slot of this.slots) slot.epoch = -1;
  }
}
