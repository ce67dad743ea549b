import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { ChatMessage } from '@llmq/contracts';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { ApiDeps } from '../deps';
import { HttpError } from '../errors';

/** Where the dashboard lives. */
export const DASHBOARD_PATH = '/admin/queues';
/** The session cookie a `?token=` visit sets. */
export const SESSION_COOKIE = 'llmq_admin';
const SESSION_TTL_SECONDS = 12 * 3600;

/**
 * Bull Board over the queues (`generate`, `generate-batch`, `ingest`), for the operator only.
 * Mounted before the other admin routes (their bearer-only guard would refuse a browser), and only
 * when ADMIN_TOKEN is set: without it `/admin/*` does not exist (404). Read-only unless
 * BULL_BOARD_READ_ONLY=false: a retry or removal there bypasses the job records in Postgres.
 */
export function queueDashboardRouter(deps: ApiDeps, adminToken: string): Router {
  const { producer, settings } = deps;
  const adapters = [
    producer.queue('generate', 'interactive'),
    producer.queue('generate', 'batch'),
    producer.queue('ingest', 'batch'),
  ].map((queue) => {
    const adapter = new BullMQAdapter(queue, {
      readOnlyMode: settings.dashboardReadOnly,
      allowRetries: !settings.dashboardReadOnly,
    });
    if (!settings.logPrompts) adapter.setFormatter('data', redactJobData);
    return adapter;
  });
  const server = new ExpressAdapter();
  server.setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: adapters,
    serverAdapter: server,
    options: { uiConfig: { boardTitle: 'llmq queues', hideDocsLink: true } },
  });
  const router = Router();
  router.use(DASHBOARD_PATH, dashboardAuth(adminToken), server.getRouter() as RequestHandler);
  return router;
}

const digest = (s: string) => createHash('sha256').update(s).digest();
const sameSecret = (given: string, expected: Buffer) => timingSafeEqual(digest(given), expected);

/**
 * The operator, from a script or a browser, holding ADMIN_TOKEN in one of three forms:
 * - `Authorization: Bearer <token>`, as for every other admin route;
 * - HTTP Basic with the token as password (any user name): a 401 carries a Basic challenge, so a
 *   browser asks for it once and sends it with every later request;
 * - `?token=<token>` once (a bookmark, a link from a runbook): answered with an HttpOnly,
 *   SameSite=Strict session cookie (Secure over https) and a reload without the token. The cookie
 *   holds an expiry and an HMAC of it keyed by the token, never the token; rotating the token
 *   ends every session.
 * A state-changing request that a browser attached credentials to by itself (Basic, cookie) must
 * come from this origin, so another site cannot drive a writable dashboard.
 */
export function dashboardAuth(adminToken: string, now: () => number = Date.now): RequestHandler {
  const expected = digest(adminToken);
  const sign = (expires: number) =>
    createHmac('sha256', adminToken).update(`llmq-dashboard-session:${expires}`).digest('hex');
  const validSession = (value: string | undefined): boolean => {
    const m = /^(\d{1,12})\.([0-9a-f]{64})$/.exec(value ?? '');
    if (!m) return false;
    const expires = Number(m[1]);
    const seconds = now() / 1000;
    if (expires <= seconds || expires > seconds + SESSION_TTL_SECONDS) return false;
    return timingSafeEqual(Buffer.from(m[2]!, 'hex'), Buffer.from(sign(expires), 'hex'));
  };

  return (req, res, next) => {
    const token = req.query.token;
    if (typeof token === 'string') {
      if (!sameSecret(token, expected)) throw unauthorized();
      const expires = Math.floor(now() / 1000) + SESSION_TTL_SECONDS;
      res.cookie(SESSION_COOKIE, `${expires}.${sign(expires)}`, {
        httpOnly: true,
        sameSite: 'strict',
        secure: req.secure,
        path: DASHBOARD_PATH,
        maxAge: SESSION_TTL_SECONDS * 1000,
      });
      return reloadWithoutToken(req, res);
    }
    const auth = req.headers.authorization ?? '';
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (bearer) {
      if (!sameSecret(bearer[1]!, expected)) throw unauthorized();
      return next();
    }
    const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(auth);
    const password = basic
      ? Buffer.from(basic[1]!, 'base64').toString('utf8').split(':').slice(1).join(':')
      : null;
    const ambient =
      (password !== null && sameSecret(password, expected)) || validSession(cookie(req, SESSION_COOKIE));
    if (!ambient) throw unauthorized();
    if (!isSafe(req.method) && !sameOrigin(req)) {
      throw new HttpError(403, 'cross_site_request', 'dashboard changes must come from the dashboard itself');
    }
    next();
  };
}

function unauthorized(): HttpError {
  return new HttpError(401, 'unauthorized', 'the queue dashboard needs the admin token', {
    headers: { 'WWW-Authenticate': 'Basic realm="llmq-admin", charset="UTF-8"' },
  });
}

/**
 * A page that reloads the dashboard without `token` in the address bar. A page, not a redirect:
 * after a link from another site a redirect is still a cross-site navigation, which would not send
 * the SameSite=Strict cookie just set; a reload started by this page does.
 */
function reloadWithoutToken(req: Request, res: Response): void {
  const url = new URL(req.originalUrl, 'http://localhost');
  url.searchParams.delete('token');
  const target = `${url.pathname}${url.search}`.replace(/[^A-Za-z0-9/._~?&=%+-]/g, encodeURIComponent);
  res
    .status(200)
    .set({ 'Cache-Control': 'no-store', 'Referrer-Policy': 'no-referrer' })
    .type('html')
    .send(
      `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${target}">` +
        `<title>llmq queues</title><a href="${target}">Open the queue dashboard</a>`,
    );
}

function cookie(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

const isSafe = (method: string) => method === 'GET' || method === 'HEAD' || method === 'OPTIONS';

/** Fetch metadata where the browser sends it, else Origin against Host; neither: not a browser's. */
function sameOrigin(req: Request): boolean {
  const site = req.get('Sec-Fetch-Site');
  if (site !== undefined) return site === 'same-origin' || site === 'none';
  const origin = req.get('Origin');
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.get('Host');
  } catch {
    return false;
  }
}

/**
 * Job data as the dashboard shows it when prompts are not to be shown (LOG_PROMPTS off): the
 * messages' roles and sizes instead of their text, an embedding's length instead of its numbers.
 */
export function redactJobData(data: unknown): unknown {
  if (typeof data !== 'object' || data === null) return data;
  const d = data as { spec?: { messages?: ChatMessage[] }; cache?: { embedding?: number[] } };
  const out: Record<string, unknown> = { ...(data as Record<string, unknown>) };
  if (d.spec && Array.isArray(d.spec.messages)) {
    out.spec = {
      ...d.spec,
      messages: d.spec.messages.map((m) => ({
        role: m.role,
        content: `[redacted: ${typeof m.content === 'string' ? m.content.length : 0} characters]`,
      })),
    };
  }
  if (d.cache && Array.isArray(d.cache.embedding)) {
    out.cache = { ...d.cache, embedding: `[${d.cache.embedding.length} numbers]` };
  }
  return out;
}
