/**
 * Redis key layout of the limiter. Everything of one tenant carries the tenant as a hash tag
 * (`{t:<tenant>}`), so one script can touch a key's buckets, budgets and the tenant's active set
 * atomically, also on Redis Cluster (one slot per tenant).
 */
export function tenantBase(prefix: string, tenantId: string): string {
  return `${prefix}:rl:{t:${tenantId}}`;
}

export function keyBase(prefix: string, tenantId: string, keyId: string): string {
  return `${tenantBase(prefix, tenantId)}:k:${keyId}`;
}

export const limiterKeys = {
  requests: (prefix: string, tenantId: string, keyId: string) => `${keyBase(prefix, tenantId, keyId)}:req`,
  tokens: (prefix: string, tenantId: string, keyId: string) => `${keyBase(prefix, tenantId, keyId)}:tok`,
  spendDay: (prefix: string, tenantId: string, keyId: string, day: string) =>
    `${keyBase(prefix, tenantId, keyId)}:spend:d:${day}`,
  spendMonth: (prefix: string, tenantId: string, keyId: string, month: string) =>
    `${keyBase(prefix, tenantId, keyId)}:spend:m:${month}`,
  spendMinutes: (prefix: string, tenantId: string, keyId: string) =>
    `${keyBase(prefix, tenantId, keyId)}:spend:min`,
  alarm: (prefix: string, tenantId: string, keyId: string) => `${keyBase(prefix, tenantId, keyId)}:alarm`,
  revoked: (prefix: string, tenantId: string, keyId: string) => `${keyBase(prefix, tenantId, keyId)}:revoked`,
  active: (prefix: string, tenantId: string) => `${tenantBase(prefix, tenantId)}:active`,
  reservations: (prefix: string, tenantId: string) => `${tenantBase(prefix, tenantId)}:res`,
};
