import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { keyBase, limiterKeys } from './keys';

const ADMIT_LUA = readFileSync(join(__dirname, '..', 'lua', 'admit-8.lua'), 'utf8');
const SETTLE_LUA = readFileSync(join(__dirname, '..', 'lua', 'settle-2.lua'), 'utf8');

/** A key's limits with defaults applied. 0 means no limit, everywhere. */
export interface EffectiveLimits {
  /** Request bucket refill per minute. */
  requestsPerMinute: number;
  /** Request bucket capacity; 0 = the per-minute rate. */
  requestBurst: number;
  tokensPerMinute: number;
  tokenBurst: number;
  /** Spend caps in micro-dollars (1e-6 USD). */
  dailyBudgetMicros: number;
  monthlyBudgetMicros: number;
  /** The tenant's jobs queued + running at once. */
  maxActiveJobs: number;
}

export interface AdmitRequest {
  tenantId: string;
  keyId: string;
  jobId: string;
  /** Estimated prompt tokens + max_tokens: what the token bucket reserves. */
  tokens: number;
  /** Estimated cost at the model's price, micro-dollars: what the budgets reserve. */
  costMicros: number;
  limits: EffectiveLimits;
}

export type RejectReason =
  'revoked' | 'alarm' | 'budget_day' | 'budget_month' | 'concurrency' | 'requests' | 'tokens';

export interface BucketState {
  capacity: number;
  perMinute: number;
  remaining: number;
  /** ms until the bucket is full again. */
  resetMs: number;
}

/** Where a key stands after an admission decision: what the rate-limit headers report. */
export interface LimitState {
  requests: BucketState | null;
  tokens: BucketState | null;
  daySpentMicros: number;
  monthSpentMicros: number;
  activeJobs: number;
}

export type Decision =
  | { admitted: true; state: LimitState }
  | {
      admitted: false;
      reason: RejectReason;
      /** ms until a retry can succeed; -1 when it never can (the request is larger than the bucket). */
      retryAfterMs: number;
      state: LimitState;
    };

export interface SettleRequest {
  tenantId: string;
  jobId: string;
  /** Tokens the job really used (0 for a job that used no upstream capacity). */
  tokens: number;
  costMicros: number;
  /** Give the request back too: the admission never became a job. */
  refundRequest?: boolean;
  /**
   * The job's key, for a job that may have no reservation (never admitted one by one, like a
   * batch line): its cost then goes straight to the key's day and month spend. Pass it on the
   * job's first charge only; a reserved job ignores it.
   */
  unreservedKeyId?: string;
}

export interface SpendAlarmOptions {
  /** Trip when this minute's spend passes this multiple of the baseline; 0 disables. @defaultValue 10 */
  multiple?: number;
  /** The least baseline, micro-dollars per minute, so a new or quiet key does not trip on its first job. @defaultValue 500000 ($0.50) */
  floorMicrosPerMinute?: number;
  /** How long a tripped alarm refuses the key's work. @defaultValue 900000 (15 min) */
  durationMs?: number;
  /** Minutes of history that make the baseline. @defaultValue 60 */
  windowMinutes?: number;
}

export interface KeyLimiterOptions {
  /** @defaultValue "llmq" */
  prefix?: string;
  /** Admissions never settled are dropped from the tenant's active set after this. @defaultValue 86400000 */
  staleActiveMs?: number;
  alarm?: SpendAlarmOptions;
}

type AdmitReply = [0 | 1, string, number, number, number, number, number, number, number, number];
interface Commands {
  llmqAdmit(...args: string[]): Promise<AdmitReply>;
  llmqSettle(...args: string[]): Promise<[0 | 1, 0 | 1]>;
}

const DAY_TTL_SECONDS = 3 * 86_400;
const MONTH_TTL_SECONDS = 35 * 86_400;

/** UTC calendar labels of the budget windows. */
export function budgetWindows(at: Date): { day: string; month: string } {
  const iso = at.toISOString();
  return { day: iso.slice(0, 10).replaceAll('-', ''), month: iso.slice(0, 7).replace('-', '') };
}

/** ms until the budget window that refused a request starts over (UTC midnight, or the 1st). */
export function budgetResetMs(reason: 'budget_day' | 'budget_month', at: Date): number {
  const next =
    reason === 'budget_day'
      ? Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate() + 1)
      : Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1);
  return next - at.getTime();
}

/** A limit as the scripts take it: "" for none. */
const arg = (value: number) => (value > 0 ? String(value) : '');

function checkCount(value: number, name: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  }
}

/**
 * Per-key admission for the API: token buckets for requests and tokens, daily and monthly spend
 * caps, the tenant's concurrency and the spend-rate alarm, checked and charged in one Lua call
 * (`lua/admit-8.lua`), so any number of API processes admitting at once never let more through
 * than the limits hold, and a rejection charges nothing. `settle` (`lua/settle-2.lua`) corrects
 * the reservation with the actual usage when the job ends, exactly once.
 *
 * Redis failures are not hidden: both methods reject with ioredis' error, and the caller decides.
 */
export class KeyLimiter {
  readonly prefix: string;
  private readonly commands: Commands;
  private readonly staleActiveMs: number;
  private readonly alarm: Required<SpendAlarmOptions>;

  constructor(redis: Redis, options: KeyLimiterOptions = {}) {
    this.prefix = options.prefix ?? 'llmq';
    this.staleActiveMs = options.staleActiveMs ?? 86_400_000;
    this.alarm = {
      multiple: options.alarm?.multiple ?? 10,
      floorMicrosPerMinute: options.alarm?.floorMicrosPerMinute ?? 500_000,
      durationMs: options.alarm?.durationMs ?? 900_000,
      windowMinutes: options.alarm?.windowMinutes ?? 60,
    };
    const defined = redis as unknown as Partial<Commands>;
    if (!defined.llmqAdmit) redis.defineCommand('llmqAdmit', { numberOfKeys: 8, lua: ADMIT_LUA });
    if (!defined.llmqSettle) redis.defineCommand('llmqSettle', { numberOfKeys: 2, lua: SETTLE_LUA });
    this.commands = redis as unknown as Commands;
  }

  async admit(req: AdmitRequest): Promise<Decision> {
    const { tenantId, keyId, limits } = req;
    checkCount(req.tokens, 'tokens');
    checkCount(req.costMicros, 'costMicros');
    for (const [name, value] of Object.entries(limits)) checkCount(value, name);
    const { day, month } = budgetWindows(new Date());
    const p = this.prefix;
    const requestCapacity = limits.requestBurst || limits.requestsPerMinute;
    const tokenCapacity = limits.tokenBurst || limits.tokensPerMinute;
    const reply = await this.commands.llmqAdmit(
      limiterKeys.requests(p, tenantId, keyId),
      limiterKeys.tokens(p, tenantId, keyId),
      limiterKeys.spendDay(p, tenantId, keyId, day),
      limiterKeys.spendMonth(p, tenantId, keyId, month),
      limiterKeys.alarm(p, tenantId, keyId),
      limiterKeys.revoked(p, tenantId, keyId),
      limiterKeys.active(p, tenantId),
      limiterKeys.reservations(p, tenantId),
      req.jobId,
      arg(limits.requestsPerMinute),
      String(requestCapacity),
      arg(limits.tokensPerMinute),
      String(tokenCapacity),
      String(req.tokens),
      String(req.costMicros),
      arg(limits.dailyBudgetMicros),
      arg(limits.monthlyBudgetMicros),
      arg(limits.maxActiveJobs),
      String(this.staleActiveMs),
      String(DAY_TTL_SECONDS),
      String(MONTH_TTL_SECONDS),
      keyBase(p, tenantId, keyId),
      day,
      month,
    );
    const [
      admitted,
      reason,
      wait,
      reqRemaining,
      reqReset,
      tokRemaining,
      tokReset,
      daySpent,
      monthSpent,
      active,
    ] = reply;
    const state: LimitState = {
      requests:
        limits.requestsPerMinute > 0
          ? {
              capacity: requestCapacity,
              perMinute: limits.requestsPerMinute,
              remaining: reqRemaining,
              resetMs: reqReset,
            }
          : null,
      tokens:
        limits.tokensPerMinute > 0
          ? {
              capacity: tokenCapacity,
              perMinute: limits.tokensPerMinute,
              remaining: tokRemaining,
              resetMs: tokReset,
            }
          : null,
      daySpentMicros: daySpent,
      monthSpentMicros: monthSpent,
      activeJobs: active,
    };
    if (admitted === 1) return { admitted: true, state };
    const rejected = reason as RejectReason;
    const retryAfterMs =
      rejected === 'budget_day' || rejected === 'budget_month' ? budgetResetMs(rejected, new Date()) : wait;
    return { admitted: false, reason: rejected, retryAfterMs, state };
  }

  /** Corrects a job's reservation with its actual usage; returns false when it was settled already. */
  async settle(req: SettleRequest): Promise<{ settled: boolean; alarmTripped: boolean }> {
    checkCount(req.tokens, 'tokens');
    checkCount(req.costMicros, 'costMicros');
    const [settled, tripped] = await this.commands.llmqSettle(
      limiterKeys.active(this.prefix, req.tenantId),
      limiterKeys.reservations(this.prefix, req.tenantId),
      req.jobId,
      String(req.tokens),
      String(req.costMicros),
      req.refundRequest ? '1' : '0',
      String(this.alarm.multiple),
      String(this.alarm.floorMicrosPerMinute),
      String(this.alarm.durationMs),
      String(this.alarm.windowMinutes),
      ...this.unreservedArgs(req),
    );
    return { settled: settled === 1, alarmTripped: tripped === 1 };
  }

  /** Where a job without a reservation adds its cost: its key's spend counters of this day and month. */
  private unreservedArgs(req: SettleRequest): string[] {
    if (!req.unreservedKeyId) return [];
    const { day, month } = budgetWindows(new Date());
    const base = keyBase(this.prefix, req.tenantId, req.unreservedKeyId);
    return [base, day, month, String(DAY_TTL_SECONDS), String(MONTH_TTL_SECONDS)];
  }

  /** What the key has spent (reservations included) in the current UTC day and month. */
  async spend(tenantId: string, keyId: string): Promise<{ dayMicros: number; monthMicros: number }> {
    const { day, month } = budgetWindows(new Date());
    const redis = this.commands as unknown as Redis;
    const [d, m] = await redis.mget(
      limiterKeys.spendDay(this.prefix, tenantId, keyId, day),
      limiterKeys.spendMonth(this.prefix, tenantId, keyId, month),
    );
    return { dayMicros: Number(d ?? 0), monthMicros: Number(m ?? 0) };
  }

  /** Lifts a tripped spend-rate alarm (an operator decided the spend is fine). */
  async clearAlarm(tenantId: string, keyId: string): Promise<boolean> {
    const redis = this.commands as unknown as Redis;
    return (await redis.del(limiterKeys.alarm(this.prefix, tenantId, keyId))) === 1;
  }
}

/** Dollars to the integer micro-dollars budgets count in (rounded up: estimates must not undercount). */
export function toMicros(usd: number): number {
  return Math.ceil(Math.round(usd * 1e9) / 1e3);
}
