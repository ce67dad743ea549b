import { jittered, type Timing } from './controls';
import type { Exchange } from './http';
import type { Stats } from './stats';
import type { Completion } from './text';

/** How fast (and whether completely) the tokens of one answer are delivered. */
export interface Pace {
  readonly firstDelay: () => number;
  readonly gap: () => number;
  /** Destroy the connection after this many content tokens (the cut-after fault). */
  readonly cutAfter: number | undefined;
}

export function paceFor(timing: Timing, fault: { cutAfter?: number; trickleMs?: number } = {}): Pace {
  const { trickleMs } = fault;
  return {
    firstDelay: () => jittered(timing.ttftMs, timing.jitter),
    gap: trickleMs === undefined ? () => jittered(timing.tokenMs, timing.jitter) : () => trickleMs,
    cutAfter: fault.cutAfter,
  };
}

/** One answer on its way out, whichever API asked for it. */
export interface Generation {
  readonly completion: Completion;
  readonly pace: Pace;
  readonly headers: Readonly<Record<string, string>>;
  readonly stats: Stats;
}

/**
 * The wire format of a stream: the one thing that differs between the OpenAI and the
 * Anthropic endpoints. Each method returns complete server-sent events.
 */
export interface StreamFormat {
  /** Everything before the first content token; written with it (or alone, before a cut). */
  start(): string;
  content(token: string): string;
  /** Everything after the last content token, ending the stream. */
  end(completion: Completion): string;
}

/**
 * Calls `respond` once the whole answer would have been generated, or cuts the connection
 * at that moment when a cut-after fault applies (a non-streamed answer has nothing to flush).
 */
export function whenGenerated(exchange: Exchange, generation: Generation, respond: () => void): void {
  const { completion, pace } = generation;
  const generated = Math.min(pace.cutAfter ?? Infinity, completion.tokens.length);
  let delay = pace.firstDelay();
  for (let i = 1; i < generated; i++) delay += pace.gap();
  const finish = (): void => {
    if (pace.cutAfter !== undefined) return exchange.cut();
    generation.stats.addTokens(completion.tokens.length);
    respond();
  };
  if (delay <= 0) return finish();
  const timer = setTimeout(finish, delay);
  exchange.onAbort(() => clearTimeout(timer));
}

/**
 * Streams the answer as server-sent events. Each token has a due time on one timeline
 * (start + TTFT + gaps); a timer wakes for the next one and writes every token already due
 * in a single write. Unloaded, that is one write per token; under load, late timers batch
 * tokens instead of stretching every stream, so the simulator keeps its promised timing and
 * spends fewer syscalls exactly when it is short of CPU. A zero-delay stream is one write.
 */
export function streamTokens(exchange: Exchange, generation: Generation, format: StreamFormat): void {
  const { res } = exchange;
  const { completion, pace, stats } = generation;
  const { tokens } = completion;
  const cutAt = pace.cutAfter === undefined ? undefined : Math.min(pace.cutAfter, tokens.length);
  let started = false;
  let next = 0;
  let due = performance.now() + pace.firstDelay();
  let timer: NodeJS.Timeout | undefined;

  const emit = (): void => {
    timer = undefined;
    const now = performance.now();
    let out = started ? '' : format.start();
    started = true;
    const before = next;
    while (next < tokens.length && next !== cutAt && due <= now + TIMER_SLACK_MS) {
      out += format.content(tokens[next] ?? '');
      next += 1;
      if (next < tokens.length) due += pace.gap();
    }
    stats.addTokens(next - before);
    if (next === cutAt) {
      // Flush what was generated before the cut, or the client would not see those tokens.
      exchange.settle('faulted');
      if (out === '') exchange.cut();
      else res.write(out, () => exchange.cut());
    } else if (next === tokens.length) {
      res.end(out + format.end(completion));
    } else {
      if (out !== '') res.write(out);
      timer = setTimeout(emit, Math.max(0, Math.round(due - now)));
    }
  };

  res.writeHead(200, { ...generation.headers, ...SSE_HEADERS });
  exchange.onAbort(() => clearTimeout(timer));
  const wait = due - performance.now();
  if (wait <= TIMER_SLACK_MS) return emit();
  res.flushHeaders();
  timer = setTimeout(emit, Math.round(wait));
}

/** Tokens due within this many milliseconds go out now rather than after a 1 ms timer. */
const TIMER_SLACK_MS = 1;

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };
