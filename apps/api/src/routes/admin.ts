import { createHash, timingSafeEqual } from 'node:crypto';
import { Router, type RequestHandler } from 'express';
import type { ApiDeps } from '../deps';
import { HttpError, notFound } from '../errors';
import { adminKeysRouter } from './admin-keys';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * The operator guard: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time through
 * hashes so length does not leak. Without a configured token admin routes do not exist (404).
 */
export function requireAdmin(adminToken: string | null): RequestHandler {
  const expected = adminToken ? digest(adminToken) : null;
  return (req, _res, next) => {
    if (!expected) throw notFound('route');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m || !timingSafeEqual(digest(m[1]!), expected)) {
      throw new HttpError(401, 'unauthorized', 'admin routes need the admin token', {
        headers: { 'WWW-Authenticate': 'Bearer realm="llmq-admin"' },
      });
    }
    next();
  };
}

/**
 * Operator routes under /admin, every one behind {@link requireAdmin}: cache purge here, API
 * keys and tenant limits in `admin-keys.ts`.
 */
export function adminRouter(deps: ApiDeps, adminToken: string | null): Router {
  const router = Router();
  router.use('/admin', requireAdmin(adminToken));

  /** DELETE /admin/cache?key=…|tenant=…|model=… (filters combine): purge both cache layers. */
  router.delete('/admin/cache', async (req, res) => {
    if (!deps.cache)
      throw new HttpError(409, 'cache_disabled', 'the response cache is off (CACHE_ENABLED=false)');
    const q = (name: string) => {
      const v = req.query[name];
      if (v === undefined) return undefined;
      if (typeof v !== 'string' || v === '' || v.length > 256) {
        throw new HttpError(400, 'invalid_request', `${name} must be one non-empty value`, { field: name });
      }
      return v;
    };
    const key = q('key');
    const tenant = q('tenant');
    const model = q('model');
    if (key !== undefined && !/^[0-9a-f]{64}$/.test(key)) {
      throw new HttpError(400, 'invalid_request', 'key is a 64-character hex cache key', { field: 'key' });
    }
    if (key === undefined && tenant === undefined && model === undefined) {
      throw new HttpError(400, 'invalid_request', 'give key, tenant or model (or a combination)', {
        field: 'key',
      });
    }
    const scope = tenant === undefined ? undefined : tenant === '*shared*' ? 'shared' : `tenant:${tenant}`;
    const purged = await deps.cache.purge({
      ...(key !== undefined ? { key } : {}),
      ...(scope !== undefined ? { scope } : {}),
      ...(model !== undefined ? { model } : {}),
    });
    res.json({ purged });
  });
  router.use('/admin', adminKeysRouter(deps));
  return router;
}
