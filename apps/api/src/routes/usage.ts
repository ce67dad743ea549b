import { Router } from 'express';
import type { ApiDeps } from '../deps';
import { HttpError } from '../errors';
import { effectiveLimits } from '../limits';

const DAY = /^\d{4}-\d{2}-\d{2}$/;
const MAX_DAYS = 366;

function day(value: unknown, field: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !DAY.test(value) || Number.isNaN(Date.parse(`${value}T00:00:00Z`))) {
    throw new HttpError(400, 'invalid_request', `${field} must be a date, YYYY-MM-DD`, { field });
  }
  return value;
}

/**
 * `GET /api/usage?from=YYYY-MM-DD&to=YYYY-MM-DD`: the calling key's own usage by UTC day and model
 * (default: the last 30 days), from the ledger, with the key's limits and what it has spent
 * (reservations included) against its budgets today and this month.
 */
export function usageRouter(deps: ApiDeps): Router {
  const router = Router();
  router.get('/usage', async (req, res) => {
    const principal = req.principal!;
    const today = new Date().toISOString().slice(0, 10);
    const to = day(req.query.to, 'to', today);
    const from = day(
      req.query.from,
      'from',
      new Date(Date.parse(`${to}T00:00:00Z`) - 29 * 86_400_000).toISOString().slice(0, 10),
    );
    const span = (Date.parse(to) - Date.parse(from)) / 86_400_000;
    if (span < 0) throw new HttpError(400, 'invalid_request', 'from must not be after to', { field: 'from' });
    if (span >= MAX_DAYS) {
      throw new HttpError(400, 'invalid_request', `at most ${MAX_DAYS} days per query`, { field: 'from' });
    }
    const [rows, spend] = await Promise.all([
      deps.ledger.byDayAndModel(principal.apiKeyId, from, to),
      deps.limiter.spend(principal.tenantId, principal.apiKeyId).catch(() => null),
    ]);
    const limits = effectiveLimits(
      deps.limitsEnv,
      principal.record.limits,
      principal.record.tenantMaxActiveJobs,
    );
    const usd = (micros: number) => micros / 1e6;
    const totals = rows.reduce(
      (t, r) => ({
        jobs: t.jobs + r.jobs,
        promptTokens: t.promptTokens + r.promptTokens,
        completionTokens: t.completionTokens + r.completionTokens,
        costUsd: Math.round((t.costUsd + r.costUsd) * 1e6) / 1e6,
      }),
      { jobs: 0, promptTokens: 0, completionTokens: 0, costUsd: 0 },
    );
    res.json({
      from,
      to,
      data: rows,
      totals,
      limits: {
        requestsPerMinute: limits.requestsPerMinute || null,
        requestBurst: limits.requestBurst || limits.requestsPerMinute || null,
        tokensPerMinute: limits.tokensPerMinute || null,
        tokenBurst: limits.tokenBurst || limits.tokensPerMinute || null,
        dailyBudgetUsd: usd(limits.dailyBudgetMicros) || null,
        monthlyBudgetUsd: usd(limits.monthlyBudgetMicros) || null,
        tenantMaxActiveJobs: limits.maxActiveJobs || null,
      },
      spend: spend && { todayUsd: usd(spend.dayMicros), thisMonthUsd: usd(spend.monthMicros) },
    });
  });
  return router;
}
