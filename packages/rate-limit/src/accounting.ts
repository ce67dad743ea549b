import type { AttemptEntry, JobCharge, UsageLedger } from '@llmq/db';
import type { KeyLimiter } from './limiter';

/** Dollars as the integer micro-dollars the limiter counts, rounded like the ledger's numeric(14,6). */
const micros = (usd: number) => Math.max(0, Math.round(usd * 1e6));

/**
 * The end of a job's books: one ledger entry (what the key is charged) and the settlement of what
 * admission reserved (tokens back to the bucket, budgets corrected to the actual cost, the tenant's
 * active slot freed). Both steps are idempotent, so every path that can finish a job (the worker,
 * a second run of it, a cancel) may call this; the job is charged once.
 */
export class Accounting {
  constructor(
    private readonly ledger: UsageLedger,
    private readonly limiter: KeyLimiter,
  ) {}

  /** Returns whether this call wrote the ledger entry (false: charged before). */
  async finish(
    tenantId: string,
    charge: JobCharge,
    options: { refundRequest?: boolean } = {},
  ): Promise<boolean> {
    const { charged, apiKeyId } = await this.ledger.chargeJob(charge);
    // Tokens served from the cache or by a coalesced leader took no upstream capacity of this key.
    const upstream = charge.cacheStatus === 'miss';
    await this.limiter.settle({
      tenantId,
      jobId: charge.jobId,
      tokens: upstream ? charge.promptTokens + charge.completionTokens : 0,
      costMicros: micros(charge.costUsd),
      ...(options.refundRequest ? { refundRequest: true } : {}),
      // On the first charge only: a job never admitted one by one (a batch line) still spends.
      ...(charged && apiKeyId ? { unreservedKeyId: apiKeyId } : {}),
    });
    return charged;
  }

  /** Records a run's upstream calls (every run of a job records its own: they all happened). */
  recordAttempts(entries: AttemptEntry[]): Promise<void> {
    return this.ledger.recordAttempts(entries);
  }

  /** Gives back everything an admission took, for an admission that never became a job. */
  async release(tenantId: string, jobId: string): Promise<void> {
    await this.limiter.settle({ tenantId, jobId, tokens: 0, costMicros: 0, refundRequest: true });
  }
}
