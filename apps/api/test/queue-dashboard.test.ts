/**
 * The queue dashboard (Bull Board) at /admin/queues, against the real API process: the operator
 * opens it with the admin token as a bearer header, as a Basic password (what a browser's login
 * prompt sends) or once as ?token= (which leaves a session cookie, never the token); everybody
 * else gets 401; an API without ADMIN_TOKEN has no such route; read-only by default.
 */
import { eventually, useStack } from '@llmq/testing';

jest.setTimeout(90_000);

const ADMIN = 'dashboard-admin-token-0123456789';
// The stack's own API has no ADMIN_TOKEN; an extra API process with one serves the dashboard.
const { stack, keys } = useStack({ workers: 1 });
let url = '';

beforeAll(async () => {
  url = (await stack.startExtraApi({ ADMIN_TOKEN: ADMIN })).url;
}, 60_000);

const basic = (password: string, user = 'operator') =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function get(path: string, headers: Record<string, string> = {}, base = url) {
  return fetch(`${base}${path}`, { headers, redirect: 'manual' });
}

describe('the queue dashboard', () => {
  test('loads for the operator with the admin token as bearer or as Basic password', async () => {
    for (const authorization of [`Bearer ${ADMIN}`, basic(ADMIN), basic(ADMIN, '')]) {
      const res = await get('/admin/queues', { authorization });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/html');
      const html = await res.text();
      expect(html).toContain('llmq queues');
      expect(html).toContain('<base href="/admin/queues/"');
    }
    // The UI's own assets and API are behind the same guard.
    const page = await (await get('/admin/queues', { authorization: basic(ADMIN) })).text();
    const script = /src="(static\/js\/main\.[^"]+\.js)"/.exec(page)?.[1];
    expect(script).toBeDefined();
    expect((await get(`/admin/queues/${script}`, { authorization: basic(ADMIN) })).status).toBe(200);
    expect((await get(`/admin/queues/${script}`)).status).toBe(401);
    const queues = await get('/admin/queues/api/queues', { authorization: basic(ADMIN) });
    expect(queues.status).toBe(200);
  });

  test('lists the generate, generate-batch and ingest queues, read-only, with prompts redacted', async () => {
    const prompt = `dashboard prompt ${Date.now()} do not show`;
    const { res, body } = await stack.submit(keys.acme!, { prompt, max_tokens: 8 });
    expect(res.status).toBe(202);
    await stack.waitForJob(keys.acme!, body.jobId);

    // BullMQ moves the job to completed just after its record says so.
    const text = await eventually(async () => {
      const res = await get(
        '/admin/queues/api/queues?activeQueue=generate&status=completed&page=1&jobsPerPage=50',
        { authorization: `Bearer ${ADMIN}` },
      );
      expect(res.status).toBe(200);
      const t = await res.text();
      return t.includes(body.jobId) ? t : undefined;
    }, 'the completed job is listed');
    const listed = JSON.parse(text) as { queues: { name: string; readOnlyMode: boolean }[] };
    expect(listed.queues.map((q) => q.name).sort()).toEqual(['generate', 'generate-batch', 'ingest']);
    expect(listed.queues.every((q) => q.readOnlyMode)).toBe(true);
    // The job's data is shown without its prompt text.
    expect(text).toContain('[redacted:');
    expect(text).not.toContain(prompt);

    // Read-only: pausing a queue is refused and the queue keeps running.
    const pause = await fetch(`${url}/admin/queues/api/queues/generate/pause`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(pause.status).toBeGreaterThanOrEqual(400);
    const after = await stack.submit(keys.acme!, { prompt: 'still running?', max_tokens: 4 });
    expect((await stack.waitForJob(keys.acme!, after.body.jobId)).status).toBe('completed');
  });

  test('?token= once sets a session cookie (not the token) that opens the dashboard', async () => {
    const first = await get(`/admin/queues?token=${encodeURIComponent(ADMIN)}`);
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-control')).toBe('no-store');
    const page = await first.text();
    expect(page).toContain('http-equiv="refresh"');
    expect(page).not.toContain(ADMIN);
    const setCookie = first.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/^llmq_admin=\d+\.[0-9a-f]{64};/);
    expect(setCookie).toContain('HttpOnly');
    expect(setCookie).toContain('SameSite=Strict');
    expect(setCookie).toContain('Path=/admin/queues');
    expect(setCookie).not.toContain('Secure'); // plain http here; https (or a trusted proxy's) adds it
    expect(setCookie).not.toContain(ADMIN);
    const session = setCookie.split(';')[0]!;

    const res = await get('/admin/queues', { cookie: session });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    // A forged or tampered cookie is not a session.
    const forged = session.replace(/.$/, (c) => (c === '0' ? '1' : '0'));
    expect((await get('/admin/queues', { cookie: forged })).status).toBe(401);
    expect((await get('/admin/queues', { cookie: 'llmq_admin=9999999999.' + 'a'.repeat(64) })).status).toBe(
      401,
    );
    // Ambient credentials do not let another site change anything.
    const crossSite = await fetch(`${url}/admin/queues/api/queues/generate/resume`, {
      method: 'PUT',
      headers: { cookie: session, 'sec-fetch-site': 'cross-site' },
    });
    expect(crossSite.status).toBe(403);
  });

  test('is 401 without the admin token, with a wrong one, or with an API key', async () => {
    const wrong = 'not-the-admin-token-0123456789';
    const attempts: Record<string, string>[] = [
      {},
      { authorization: `Bearer ${wrong}` },
      { authorization: basic(wrong) },
      { authorization: `Bearer ${keys.acme!}` },
    ];
    for (const headers of attempts) {
      const res = await get('/admin/queues', headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('Basic realm="llmq-admin"');
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
    const res = await get(`/admin/queues?token=${wrong}`);
    expect(res.status).toBe(401);
    expect(res.headers.get('set-cookie')).toBeNull();
    expect((await get('/admin/queues/api/queues')).status).toBe(401);
  });

  test('does not exist (404) on an API without ADMIN_TOKEN', async () => {
    for (const path of ['/admin/queues', `/admin/queues?token=${ADMIN}`, '/admin/queues/api/queues']) {
      const res = await get(path, { authorization: `Bearer ${ADMIN}` }, stack.apiUrl);
      expect(res.status).toBe(404);
    }
  });
});
