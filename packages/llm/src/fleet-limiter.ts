/**
 * Fleet-wide provider limits: requests and tokens per minute per backend, shared by every
 * worker through Redis, so the fleet stays under a provider account's limits however many
 * workers run. The bucket math lives in `lua/acquireLimits-2.lua` and `lua/settleTokens-1.lua`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';

const ACQUIRE_LUA = readFileSync(join(__dirname, '..', 'lua', 'acquireLimits-2.lua'), 'utf8');
const SETTLE_LUA = readFileSync(join(__dirname, '..', 'lua', 'settleTokens-1.lua'), 'utf8');

export interface BackendLimits {
  /** Requests per minute; undefined = unlimited. */
  requestsPerMinute?: number;
  /** Tokens (prompt + max completion) per minute; undefined = unlimited. */
  tokensPerMinute?: number;
}

/**
 * `retryAfterMs` of a rejection that no wait can cure: the call costs more than the whole
 * per-minute limit (more tokens than `tokensPerMinute`, or a limit of 0). Every other rejection
 * has `retryAfterMs >= 1`.
 */
export const NEVER_FITS = -1;

/**
 * The answer of {@link FleetLimiter.acquire}. A rejection took nothing; its `retryAfterMs` is how
 * long until the call would fit if no other worker took budget meanwhile (at least 1), or
 * {@link NEVER_FITS} (-1) when it never will. `reason` names the limit that decided the wait.
 */
export type Admission =
  { ok: true; reservation: Reservation } | { ok: false; retryAfterMs: number; reason: 'requests' | 'tokens' };

export interface Reservation {
  backendId: string;
  /** Tokens reserved at admission, the estimate that {@link FleetLimiter.settle} corrects. */
  tokens: number;
  /** Admission time, ms since the epoch (Redis' clock when a limit applied). */
  at: number;
}

export interface FleetLimiter {
  /** Atomically takes 1 request and `tokens` tokens from the backend's budget, or nothing. */
  acquire(backendId: string, limits: BackendLimits, tokens: number): Promise<Admission>;
  /** After the call: corrects the token reservation with what was really used (refund or charge extra). */
  settle(reservation: Reservation, limits: BackendLimits, actualTokens: number): Promise<void>;
}

export interface RedisFleetLimiterOptions {
  /** Key prefix; keys are `<prefix>:limits:{<backendId>}:req` and `:tok`. @defaultValue "llmq" */
  prefix?: string;
}

type AcquireCommand = (
  requestKey: string,
  tokenKey: string,
  requestsPerMinute: string,
  tokensPerMinute: string,
  tokens: string,
) => Promise<[0 | 1, number, ('requests' | 'tokens')?]>;

type SettleCommand = (tokenKey: string, tokensPerMinute: string, delta: string) => Promise<string>;

interface LimiterCommands {
  llmqAcquireLimits: AcquireCommand;
  llmqSettleTokens: SettleCommand;
}

/** A limit as the scripts take it: "" for none. Throws on values that are no limit at all. */
function limitArg(value: number | undefined, name: string): string {
  if (value === undefined || value === Number.POSITIVE_INFINITY) return '';
  if (!(value >= 0)) throw new RangeError(`${name} must be >= 0 or undefined (unlimited), got ${value}`);
  return String(value);
}

function checkTokens(tokens: number, name: string): void {
  if (!Number.isFinite(tokens) || tokens < 0) {
    throw new RangeError(`${name} must be a finite number >= 0, got ${tokens}`);
  }
}

/**
 * Token buckets in Redis (capacity = the per-minute limit, refilled continuously at limit/60000
 * per ms), checked and taken in one Lua script per call, timed by Redis' clock, so N workers
 * admitting at once never let more through than the budget.
 *
 * Limits come with every call, so a reloaded providers file applies at once; a backend with
 * neither limit costs no Redis round trip.
 *
 * Redis failures are not hidden: `acquire` and `settle` reject with ioredis' error (or wait for
 * the reconnection, when the connection has `maxRetriesPerRequest: null`, as workers' have). The
 * caller decides between failing the call and going ahead unmetered. A lost `settle` only leaves
 * the estimate charged, which is an upper bound when it counts the max completion tokens.
 */
export class RedisFleetLimiter implements FleetLimiter {
  readonly prefix: string;
  private readonly commands: LimiterCommands;

  constructor(redis: Redis, options: RedisFleetLimiterOptions = {}) {
    this.prefix = options.prefix ?? 'llmq';
    const defined = redis as unknown as Partial<LimiterCommands>;
    if (!defined.llmqAcquireLimits) {
      redis.defineCommand('llmqAcquireLimits', { numberOfKeys: 2, lua: ACQUIRE_LUA });
    }
    if (!defined.llmqSettleTokens) {
      redis.defineCommand('llmqSettleTokens', { numberOfKeys: 1, lua: SETTLE_LUA });
    }
    this.commands = redis as unknown as LimiterCommands;
  }

  async acquire(backendId: string, limits: BackendLimits, tokens: number): Promise<Admission> {
    checkTokens(tokens, 'tokens');
    const rpm = limitArg(limits.requestsPerMinute, 'requestsPerMinute');
    const tpm = limitArg(limits.tokensPerMinute, 'tokensPerMinute');
    if (rpm === '' && tpm === '') {
      return { ok: true, reservation: { backendId, tokens, at: Date.now() } };
    }
    const [ok, value, reason] = await this.commands.llmqAcquireLimits(
      this.key(backendId, 'req'),
      this.key(backendId, 'tok'),
      rpm,
      tpm,
      String(tokens),
    );
    if (ok === 1) return { ok: true, reservation: { backendId, tokens, at: value } };
    return { ok: false, retryAfterMs: value, reason: reason ?? 'requests' };
  }

  async settle(reservation: Reservation, limits: BackendLimits, actualTokens: number): Promise<void> {
    checkTokens(actualTokens, 'actualTokens');
    const tpm = limitArg(limits.tokensPerMinute, 'tokensPerMinute');
    const delta = reservation.tokens - actualTokens;
    // no token limit (now): nothing to correct; a limit of 0 admits nothing, so nothing to refund
    if (tpm === '' || Number(tpm) === 0 || delta === 0) return;
    await this.commands.llmqSettleTokens(this.key(reservation.backendId, 'tok'), tpm, String(delta));
  }

  /** One hash tag per backend: both of its keys live in the same Redis Cluster slot. */
  private key(backendId: string, kind: 'req' | 'tok'): string {
    return `${this.prefix}:limits:{${backendId}}:${kind}`;
  }
}

/** No fleet-wide limits (no Redis): every call is admitted. */
export class UnlimitedLimiter implements FleetLimiter {
  async acquire(backendId: string, _limits: BackendLimits, tokens: number): Promise<Admission> {
    return { ok: true, reservation: { backendId, tokens, at: Date.now() } };
  }

  async settle(_reservation: Reservation, _limits: BackendLimits, _actualTokens: number): Promise<void> {}
}
