import type { JobEvent, Usage } from '@llmq/contracts';
import type { Redis } from 'ioredis';
import type { EventHub } from './event-hub';
import { keys } from './keys';

/** The leader of a coalesced request failed or was cancelled; its followers fail with it. */
export class LeaderFailedError extends Error {
  readonly code = 'coalesced_leader_failed';
  constructor(
    readonly leaderJobId: string,
    reason: string,
    /** The leader was cancelled (its client went away), not failed: its followers may try again. */
    readonly leaderCancelled = false,
  ) {
    super(`an identical request this job was coalesced with did not complete: ${reason}`);
    this.name = 'LeaderFailedError';
  }
}

export interface LeaderResult {
  result: string;
  finishReason: string | null;
  usage: Usage | null;
}

const RELEASE =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/**
 * Single-flight across the fleet: of identical cacheable requests in flight at once, the first
 * job to claim the request's cache key is the leader and calls the provider; the others follow
 * the leader's event stream and finish with its result. A lease bounds a leader that vanished
 * (its job is retried under the same id, so the retry is still the leader).
 */
export class SingleFlight {
  /** For metrics: requests that led, and requests coalesced into a leader's call. */
  readonly counters = { led: 0, coalesced: 0 };

  constructor(
    private readonly redis: Redis,
    private readonly hub: EventHub,
    private readonly prefix = 'llmq',
    /** @defaultValue 600000 */
    private readonly leaseMs = 600_000,
  ) {}

  /** Null when this job leads (or already led); otherwise the leader's job id. */
  async claim(key: string, jobId: string): Promise<string | null> {
    const k = keys.inflight(this.prefix, key);
    for (let i = 0; i < 3; i++) {
      if ((await this.redis.set(k, jobId, 'PX', this.leaseMs, 'NX')) === 'OK') {
        this.counters.led++;
        return null;
      }
      const leader = await this.redis.get(k);
      if (leader === jobId) return null;
      if (leader !== null) {
        this.counters.coalesced++;
        return leader;
      }
      // The leader released between our SET and GET: try again.
    }
    return null;
  }

  async release(key: string, jobId: string): Promise<void> {
    await this.redis.eval(RELEASE, 1, keys.inflight(this.prefix, key), jobId);
  }

  /**
   * Follows the leader's events: `onToken` for each text delta (`onRestart` if the leader's
   * worker died and its text starts over), resolves with the leader's result, rejects with
   * LeaderFailedError if it failed or was cancelled, or if it is silent for `timeoutMs`.
   */
  follow(
    leaderJobId: string,
    signal: AbortSignal,
    onToken: (text: string) => void,
    onRestart: () => void,
    timeoutMs = this.leaseMs,
  ): Promise<LeaderResult> {
    return new Promise<LeaderResult>((resolve, reject) => {
      let stop: (() => void) | null = null;
      let done = false;
      const finish = (fn: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        stop?.();
        fn();
      };
      const timer = setTimeout(
        () => finish(() => reject(new LeaderFailedError(leaderJobId, `no word from it for ${timeoutMs} ms`))),
        timeoutMs,
      );
      const onAbort = () =>
        finish(() => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted')));
      signal.addEventListener('abort', onAbort, { once: true });
      const onEvent = (e: JobEvent) => {
        switch (e.type) {
          case 'token':
            onToken(e.text);
            break;
          case 'status':
            if (e.restarted) onRestart();
            break;
          case 'completed':
            finish(() => resolve({ result: e.result, finishReason: e.finishReason, usage: e.usage }));
            break;
          case 'failed':
            finish(() => reject(new LeaderFailedError(leaderJobId, e.error.message)));
            break;
          case 'cancelled':
            finish(() => reject(new LeaderFailedError(leaderJobId, 'it was cancelled', true)));
            break;
        }
      };
      this.hub.follow(leaderJobId, 0, onEvent).then(
        (s) => {
          stop = s;
          if (done) s();
        },
        (error: unknown) => finish(() => reject(error)),
      );
    });
  }
}
