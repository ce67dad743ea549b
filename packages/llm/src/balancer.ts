/**
 * Peak-EWMA latency (as in Finagle and Linkerd): a slower sample replaces the average at once
 * (peak sensitivity), faster ones pull it down with exponential decay over `decayMs`. A backend
 * that turns slow loses traffic immediately and earns it back gradually.
 */
export class PeakEwma {
  private value: number;
  private stamp: number;
  private sampled = false;

  constructor(
    initialMs: number,
    private readonly decayMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {
    this.value = initialMs;
    this.stamp = now();
  }

  observe(sampleMs: number): void {
    const t = this.now();
    // The prior only stands in until the first real sample; it must not linger for `decayMs`.
    if (!this.sampled || sampleMs > this.value) {
      this.sampled = true;
      this.value = sampleMs;
    } else {
      const w = Math.exp(-Math.max(0, t - this.stamp) / this.decayMs);
      this.value = this.value * w + sampleMs * (1 - w);
    }
    this.stamp = t;
  }

  get ms(): number {
    return this.value;
  }
}

export interface Candidate {
  id: string;
  latency: PeakEwma;
  inFlight: number;
  weight: number;
}

/** The load score: expected latency times the queue one more request would join, per unit of weight. */
export function cost(c: Candidate): number {
  return (c.latency.ms * (c.inFlight + 1)) / c.weight;
}

/**
 * Power of two choices: draw two distinct candidates (weighted by `weight`), keep the cheaper.
 * Close to the best choice's quality without herding every worker onto one backend.
 */
export function pickTwo<C extends Candidate>(candidates: C[], random = Math.random): C | undefined {
  if (candidates.length <= 1) return candidates[0];
  const a = weightedDraw(candidates, random);
  const rest = candidates.filter((c) => c !== a);
  const b = weightedDraw(rest, random);
  return cost(a) <= cost(b) ? a : b;
}

function weightedDraw<C extends Candidate>(candidates: C[], random: () => number): C {
  const total = candidates.reduce((s, c) => s + c.weight, 0);
  let r = random() * total;
  for (const c of candidates) {
    r -= c.weight;
    if (r < 0) return c;
  }
  return candidates[candidates.length - 1]!;
}
