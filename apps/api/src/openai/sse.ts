import type { Response } from 'express';
import type { ApiDeps } from '../deps';
import { startEventStream } from '../follow';

/** An open server-sent event stream of the OpenAI facade. */
export interface SseStream {
  /** Writes one event: `data:` with the JSON of `data` (or a raw string), after an `event:` line when named. */
  send(data: unknown, event?: string): void;
  /** Ends the stream; later calls do nothing. */
  end(): void;
  /** True once the stream ended, by us, the server's shutdown or the client. */
  readonly closed: boolean;
}

export interface SseHooks {
  /** The stream is over, whoever ended it: release what it held. */
  onClose?: () => void;
  /**
   * The last frame of a stream the server ends on shutdown. OpenAI's SDK takes a chat stream that
   * just stops as a complete answer; an error frame makes it raise instead of truncating silently.
   */
  farewell?: () => string;
}

/**
 * Opens `res` as an SSE stream: headers flushed, registered in `streams` (shutdown ends them),
 * counted, kept alive with comment heartbeats (every SSE parser skips them, the SDKs' included).
 */
export function openSse(
  deps: Pick<ApiDeps, 'settings' | 'metrics'>,
  res: Response,
  streams: Set<Response>,
  hooks: SseHooks = {},
): SseStream {
  startEventStream(res);
  streams.add(res);
  deps.metrics.sseConnections.inc();

  let endedHere = false;
  let closed = false;
  const heartbeat = setInterval(() => {
    if (!res.writableEnded) res.write(': keep-alive\n\n');
  }, deps.settings.sseHeartbeatMs);
  // main.ts ends every registered stream with res.end() on shutdown; the farewell goes first.
  const end = res.end.bind(res) as (...args: unknown[]) => Response;
  res.end = ((...args: unknown[]) => {
    clearInterval(heartbeat);
    if (!endedHere && !res.writableEnded && hooks.farewell) res.write(hooks.farewell());
    endedHere = true;
    return end(...args);
  }) as Response['end'];

  res.on('close', () => {
    closed = true;
    clearInterval(heartbeat);
    if (streams.delete(res)) deps.metrics.sseConnections.dec();
    hooks.onClose?.();
  });

  return {
    send(data, event) {
      if (closed || res.writableEnded) return;
      const payload = typeof data === 'string' ? data : JSON.stringify(data);
      res.write(`${event ? `event: ${event}\n` : ''}data: ${payload}\n\n`);
    },
    end() {
      if (res.writableEnded) return;
      endedHere = true;
      res.end();
    },
    get closed() {
      return closed || res.writableEnded;
    },
  };
}

export interface ClientWatch {
  /** True once the client went away before the answer was complete. */
  readonly gone: boolean;
  /** Calls `fn` when the client goes away (at once if it already has). */
  onGone(fn: () => void): void;
}

/**
 * Watches a request for its client going away before the answer is complete (a plain answer or
 * a stream): a job a client gave up on should not keep running. Set up before anything slow, so
 * a client gone during the submission is seen too.
 */
export function watchClient(res: Response): ClientWatch {
  let gone = false;
  const listeners: (() => void)[] = [];
  res.on('close', () => {
    if (res.writableFinished) return;
    gone = true;
    for (const fn of listeners) fn();
  });
  return {
    get gone() {
      return gone;
    },
    onGone(fn) {
      if (gone) fn();
      else listeners.push(fn);
    },
  };
}
