import {
  KEY_LIMIT_MAXIMA,
  KEY_NAME_MAX_LENGTH,
  MAX_ACTIVE_JOBS_MAXIMUM,
  isApiKeyId,
  isUsdAmount,
  isValidTenantId,
  type ApiKeyRecord,
  type KeyLimits,
  type TenantLimits,
} from '@llmq/db';
import { markKeyRevoked } from '@llmq/rate-limit';
import { Router, json, type Request, type RequestHandler } from 'express';
import { z } from 'zod';
import type { ApiDeps } from '../deps';
import { HttpError, fromZod, notFound, serviceUnavailable } from '../errors';

/** What the admin API shows of a key: never its hash (and the plaintext only once, on create). */
export interface ApiKeyView {
  id: string;
  tenant: string;
  name: string | null;
  keyPrefix: string;
  createdAt: string;
  revokedAt: string | null;
  limits: KeyLimits;
}

export function toApiKeyView(record: ApiKeyRecord): ApiKeyView {
  return {
    id: record.id,
    tenant: record.tenantId,
    name: record.name,
    keyPrefix: record.keyPrefix,
    createdAt: record.createdAt.toISOString(),
    revokedAt: record.revokedAt?.toISOString() ?? null,
    limits: record.limits,
  };
}

const toTenantLimitsView = (t: TenantLimits) => ({
  tenant: t.tenantId,
  maxActiveJobs: t.maxActiveJobs,
  updatedAt: t.updatedAt?.toISOString() ?? null,
});

const MAX_PAGE = 500;
const BODY_LIMIT = '16kb';

const tenantSchema = z
  .string()
  .refine(isValidTenantId, 'tenant names are 1-64 letters, digits, dots, dashes or underscores');
const nameSchema = z
  .string()
  .min(1)
  .max(KEY_NAME_MAX_LENGTH)
  // eslint-disable-next-line no-control-regex
  .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'no control characters');
const count = (field: keyof KeyLimits) =>
  z.number().int().min(0).max(KEY_LIMIT_MAXIMA[field]).nullable().optional();
const usd = (field: keyof KeyLimits) =>
  z
    .number()
    .min(0)
    .max(KEY_LIMIT_MAXIMA[field])
    .refine(isUsdAmount, 'a USD amount with at most 6 decimals')
    .nullable()
    .optional();

/** null: back to the configured default; 0: no limit. */
const limitsSchema = z.strictObject({
  requestsPerMinute: count('requestsPerMinute'),
  requestBurst: count('requestBurst'),
  tokensPerMinute: count('tokensPerMinute'),
  tokenBurst: count('tokenBurst'),
  dailyBudgetUsd: usd('dailyBudgetUsd'),
  monthlyBudgetUsd: usd('monthlyBudgetUsd'),
});

const createSchema = z.strictObject({
  tenant: tenantSchema,
  name: nameSchema.nullable().optional(),
  limits: limitsSchema.optional(),
});
const patchSchema = z.strictObject({
  name: nameSchema.nullable().optional(),
  limits: limitsSchema.optional(),
});
const listQuerySchema = z.strictObject({
  tenant: tenantSchema.optional(),
  includeRevoked: z.enum(['true', 'false', '1', '0']).optional(),
  limit: z
    .string()
    .regex(/^[0-9]{1,4}$/, `a whole number from 1 to ${MAX_PAGE}`)
    .transform(Number)
    .pipe(z.number().int().min(1).max(MAX_PAGE))
    .optional(),
  after: z.string().refine(isApiKeyId, 'the id (a UUID) of the last key of the previous page').optional(),
});
const tenantLimitsSchema = z.strictObject({
  maxActiveJobs: z.number().int().min(0).max(MAX_ACTIVE_JOBS_MAXIMUM).nullable(),
});

/** fromZod, with an unknown key inside an object named by its whole path (`limits.rpm`). */
function invalid(error: z.ZodError): HttpError {
  const base = fromZod(error);
  const unknown = error.issues.find((i) => i.code === 'unrecognized_keys');
  if (!unknown || unknown.path.length === 0) return base;
  const prefix = unknown.path.join('.');
  const fields = (unknown as { keys: string[] }).keys.map((k) => `${prefix}.${k}`);
  return new HttpError(400, 'invalid_request', `unknown field(s): ${fields.join(', ')}`, {
    field: fields[0]!,
    ...(base.extra.errors ? { errors: base.extra.errors } : {}),
  });
}

function parse<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw invalid(parsed.error);
  return parsed.data;
}

/** The repository re-checks what the schemas let through; its RangeError is still the caller's fault. */
async function repo<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof RangeError) throw new HttpError(400, 'invalid_request', error.message);
    throw error;
  }
}

function keyId(req: Request): string {
  const id = req.params.id;
  if (typeof id !== 'string' || !isApiKeyId(id)) {
    throw new HttpError(400, 'invalid_request', 'id must be an API key id (a UUID)', { field: 'id' });
  }
  return id;
}

function tenantParam(req: Request): string {
  const tenant = req.params.tenant;
  if (typeof tenant !== 'string' || !isValidTenantId(tenant)) {
    throw new HttpError(
      400,
      'invalid_request',
      'tenant names are 1-64 letters, digits, dots, dashes or underscores',
      { field: 'tenant' },
    );
  }
  return tenant;
}

const jsonOnly: RequestHandler = (req, _res, next) => {
  if (!req.is('application/json')) {
    throw new HttpError(415, 'unsupported_media_type', 'Content-Type must be application/json');
  }
  next();
};

/**
 * API key management and tenant limits, mounted under /admin behind the admin guard
 * (`admin.ts`). A revocation is written to Postgres, then marked in Redis, where every API
 * process checks it, so a revoked key is refused at once everywhere.
 */
export function adminKeysRouter(deps: ApiDeps): Router {
  const { apiKeys } = deps;
  const router = Router();
  const body = [jsonOnly, json({ limit: BODY_LIMIT, strict: true })];

  /** POST /admin/keys {tenant, name?, limits?} → 201 {key, apiKey}: the plaintext key, this once. */
  router.post('/keys', ...body, async (req, res) => {
    const input = parse(createSchema, req.body);
    const { key, record } = await repo(() =>
      apiKeys.create(input.tenant, input.name ?? null, input.limits ?? {}),
    );
    req.log.info({ keyId: record.id, tenant: record.tenantId, limits: record.limits }, 'api key created');
    res
      .status(201)
      .set('Cache-Control', 'no-store')
      .location(`/admin/keys/${record.id}`)
      .json({ key, apiKey: toApiKeyView(record) });
  });

  /** GET /admin/keys?tenant=&includeRevoked=&limit=&after= → {data, nextAfter} (oldest first). */
  router.get('/keys', async (req, res) => {
    const q = parse(listQuerySchema, { ...req.query });
    const limit = q.limit ?? 100;
    const page = await repo(() =>
      apiKeys.list({
        ...(q.tenant !== undefined ? { tenantId: q.tenant } : {}),
        includeRevoked: q.includeRevoked === 'true' || q.includeRevoked === '1',
        limit: limit + 1,
        ...(q.after !== undefined ? { after: q.after } : {}),
      }),
    );
    const data = page.slice(0, limit);
    res.json({
      data: data.map(toApiKeyView),
      nextAfter: page.length > limit ? (data.at(-1)?.id ?? null) : null,
    });
  });

  router.get('/keys/:id', async (req, res) => {
    const record = await repo(() => apiKeys.get(keyId(req)));
    if (!record) throw notFound('API key');
    res.json(toApiKeyView(record));
  });

  /** PATCH /admin/keys/:id {name?, limits?}: fields left out keep their value; null = default. */
  router.patch('/keys/:id', ...body, async (req, res) => {
    const id = keyId(req);
    const input = parse(patchSchema, req.body);
    const record = await repo(() =>
      apiKeys.update(id, {
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.limits !== undefined ? { limits: input.limits } : {}),
      }),
    );
    if (!record) throw notFound('API key');
    req.log.info({ keyId: record.id, tenant: record.tenantId, changes: input }, 'api key changed');
    res.json(toApiKeyView(record));
  });

  /** DELETE /admin/keys/:id: revoke (idempotent; a retry writes the Redis marker again). */
  router.delete('/keys/:id', async (req, res) => {
    const record = await repo(() => apiKeys.revoke(keyId(req)));
    if (!record) throw notFound('API key');
    try {
      await markKeyRevoked(deps.redis, deps.settings.prefix ?? 'llmq', record.tenantId, record.id);
    } catch (err) {
      req.log.warn({ err, keyId: record.id }, 'revoked in Postgres, but the Redis marker failed');
      // Postgres already refuses the key; API processes that cached it would accept it for a few
      // seconds more. Say so, so the operator retries (revoking again is harmless).
      throw serviceUnavailable(
        'the key is revoked in Postgres, but Redis could not be told, so API processes may accept it for a few more seconds; retry the DELETE',
      );
    }
    req.log.info({ keyId: record.id, tenant: record.tenantId }, 'api key revoked');
    res.json(toApiKeyView(record));
  });

  /** PUT /admin/tenants/:tenant/limits {maxActiveJobs: number|null} (null: the default). */
  /** Lifts a tripped spend-rate alarm: the operator decided the spend is fine. */
  router.delete('/keys/:id/alarm', async (req, res) => {
    const record = await repo(() => apiKeys.get(keyId(req)));
    if (!record) throw notFound('API key');
    const cleared = await deps.limiter.clearAlarm(record.tenantId, record.id).catch(() => {
      throw serviceUnavailable('Redis is unreachable; retry shortly');
    });
    req.log.info({ keyId: record.id, tenant: record.tenantId, cleared }, 'spend alarm cleared');
    res.json({ cleared });
  });

  router.put('/tenants/:tenant/limits', ...body, async (req, res) => {
    const tenant = tenantParam(req);
    const input = parse(tenantLimitsSchema, req.body);
    const limits = await repo(() => apiKeys.setTenantLimits(tenant, input));
    req.log.info({ tenant, maxActiveJobs: limits.maxActiveJobs }, 'tenant limits set');
    res.json(toTenantLimitsView(limits));
  });

  router.get('/tenants/:tenant/limits', async (req, res) => {
    const tenant = tenantParam(req);
    res.json(toTenantLimitsView(await repo(() => apiKeys.getTenantLimits(tenant))));
  });

  return router;
}
