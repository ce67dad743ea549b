/** What the simulator has served, as `GET /stats` reports it. */
export interface SimulatorStats {
  /** The instance's name (`SIM_NAME`), also sent as `x-simulator-instance` on every response. */
  name: string;
  /**
   * Accepted requests (valid, known model) by kind, counted on arrival, faulted or not.
   * `chat`/`chatStream` are OpenAI chat completions, `messages`/`messagesStream` Anthropic's.
   */
  requests: {
    chat: number;
    chatStream: number;
    embeddings: number;
    models: number;
    messages: number;
    messagesStream: number;
  };
  /** Accepted requests whose successful answer was written in full. */
  completed: number;
  /** Accepted requests whose client went away before the answer ended (hung ones included). */
  aborted: number;
  /** Requests a fault was applied to, counted when the request arrives. */
  faults: { status: number; hang: number; cut: number; trickle: number };
  /** Accepted requests not yet settled. Survives a reset: it is a gauge, not a counter. */
  inFlight: number;
  /** Completion tokens written to clients (only those actually sent, for cut or aborted streams). */
  tokens: number;
  /** Requests refused with a 4xx before being accepted: bad JSON or input, unknown model or route. */
  rejected: number;
}

export type RequestKind = keyof SimulatorStats['requests'];
export type FaultKind = keyof SimulatorStats['faults'];
/** How an accepted request ended; `faulted` means a status or cut fault ended it on purpose. */
export type Outcome = 'completed' | 'aborted' | 'faulted';

export class Stats {
  private counts: SimulatorStats;

  constructor(private readonly name: string) {
    this.counts = Stats.zero(name, 0);
  }

  accept(kind: RequestKind): void {
    this.counts.requests[kind] += 1;
    this.counts.inFlight += 1;
  }

  settle(outcome: Outcome): void {
    this.counts.inFlight -= 1;
    if (outcome !== 'faulted') this.counts[outcome] += 1;
  }

  fault(kind: FaultKind): void {
    this.counts.faults[kind] += 1;
  }

  addTokens(count: number): void {
    this.counts.tokens += count;
  }

  reject(): void {
    this.counts.rejected += 1;
  }

  snapshot(): SimulatorStats {
    return structuredClone(this.counts);
  }

  reset(): void {
    this.counts = Stats.zero(this.name, this.counts.inFlight);
  }

  private static zero(name: string, inFlight: number): SimulatorStats {
    return {
      name,
      requests: { chat: 0, chatStream: 0, embeddings: 0, models: 0, messages: 0, messagesStream: 0 },
      completed: 0,
      aborted: 0,
      faults: { status: 0, hang: 0, cut: 0, trickle: 0 },
      inFlight,
      tokens: 0,
      rejected: 0,
    };
  }
}
