/**
 * The WebSocket gateway (/ws) end to end, every part a real process: a client speaks the
 * envelope protocol (PROMPT → ACK, TOKEN…, COMPLETE | ERROR) and every prompt is a queued job.
 * Settings that need other values (a short heartbeat, a small task bound, a small send buffer)
 * run on extra API processes of the same stack.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { ApiKeyRepository } from '@llmq/db';
import { markKeyRevoked } from '@llmq/rate-limit';
import { parseEnv } from '@llmq/config';
import { defaultProviders, eventually, readSse, useStack } from '@llmq/testing';
import WebSocket from 'ws';
import { apiEnvSchema, wsSettingsFrom } from '../src/config';

/** A model served by a simulator with no token delay: large outputs in little time. */
const FAST_MODEL = 'sim-fast';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const { stack, keys } = useStack(
  {
    workers: 1,
    simulators: 2,
    simulatorEnvs: [{}, { SIM_TTFT_MS: '0', SIM_TOKEN_MS: '0' }],
    providers: (urls) => {
      const base = defaultProviders([urls[0]!]) as { backends: object[] };
      return {
        backends: [
          ...base.backends,
          {
            id: 'sim-fast',
            kind: 'openai',
            baseUrl: urls[1],
            models: [{ name: FAST_MODEL, upstream: 'sim-small' }],
            timeouts: { connectMs: 2000, firstTokenMs: 10_000, idleMs: 10_000, totalMs: 120_000 },
          },
        ],
      };
    },
  },
  ['acme', 'globex', 'bulk'],
);

interface Msg {
  type: string;
  id?: string | number;
  taskId?: string;
  [field: string]: unknown;
}

/** A WebSocket client that keeps every message it receives. */
class Client {
  readonly received: Msg[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly listeners = new Set<() => void>();

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.received.push(JSON.parse(String(data)) as Msg);
      for (const listener of [...this.listeners]) listener();
    });
    this.closed = new Promise((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  send(message: object | string): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** The first message received (so far or later) that matches. */
  waitFor(match: (m: Msg) => boolean, what: string, timeoutMs = 30_000): Promise<Msg> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.received.find(match);
        if (!found) return;
        done();
        resolve(found);
      };
      const timer = setTimeout(() => {
        done();
        const last = JSON.stringify(this.received.slice(-5)).slice(0, 2000);
        reject(new Error(`${what}: not received (last messages: ${last})`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** The end of a task: its COMPLETE, or the ERROR that ended it. */
  finished(id: string | number): Promise<Msg> {
    return this.waitFor(
      (m) => m.id === id && (m.type === 'COMPLETE' || (m.type === 'ERROR' && m.taskId !== undefined)),
      `the end of task ${id}`,
    );
  }

  of(id: string | number): Msg[] {
    return this.received.filter((m) => m.id === id);
  }
}

const open: Client[] = [];
afterEach(async () => {
  const closing = open.splice(0).map((c) => {
    c.ws.terminate();
    return c.closed;
  });
  await Promise.all(closing);
});

const wsUrl = (apiUrl: string) => `${apiUrl.replace(/^http/, 'ws')}/ws`;

async function connect(
  apiUrl: string,
  key: string | null,
  options: { protocols?: string[] } = {},
): Promise<Client> {
  const ws = new WebSocket(wsUrl(apiUrl), options.protocols ?? [], {
    headers: key === null ? {} : { authorization: `Bearer ${key}` },
  });
  const client = new Client(ws);
  open.push(client);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return client;
}

/** A handshake by hand: whether it was upgraded, or the HTTP answer it got instead. */
function tryUpgrade(
  apiUrl: string,
  headers: Record<string, string>,
  path = '/ws',
): Promise<{
  upgraded: boolean;
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  socket?: Socket;
  head?: Buffer;
}> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${apiUrl}${path}`, {
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        ...headers,
      },
    });
    req.on('upgrade', (res, socket, head) =>
      resolve({ upgraded: true, status: res.statusCode ?? 0, headers: res.headers, body: '', socket, head }),
    );
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve({ upgraded: false, status: res.statusCode ?? 0, headers: res.headers, body }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

/** A value of the API's /metrics (0 when the series is absent). */
async function metric(apiUrl: string, series: string): Promise<number> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

const textOf = (messages: Msg[]) =>
  messages
    .filter((m) => m.type === 'TOKEN')
    .map((m) => m.text as string)
    .join('');

describe('the envelope protocol', () => {
  it('acknowledges with the task id and queue depth, streams tokens, completes, and the job is the same', async () => {
    const client = await connect(stack.apiUrl, keys.acme!);
    client.send({ type: 'PROMPT', id: 'r1', content: 'Tell me about sockets', max_tokens: 30 });
    client.send({
      type: 'PROMPT',
      id: 2,
      messages: [{ role: 'user', content: 'and about queues' }],
      model: 'sim-large',
      max_tokens: 20,
      metadata: { via: 'ws' },
    });
    const [end1, end2] = await Promise.all([client.finished('r1'), client.finished(2)]);

    for (const [ref, end, tokens] of [
      ['r1', end1, 30],
      [2, end2, 20],
    ] as const) {
      const replies = client.of(ref);
      const ack = replies[0]!;
      expect(ack).toMatchObject({ type: 'ACK', status: 'queued', queueDepth: expect.any(Number) });
      expect(ack.taskId).toMatch(UUID);
      expect(ack.pollUrl).toBe(`/api/jobs/${ack.taskId}`);
      // Every reply carries the client's ref and the task id: the two tasks interleave freely.
      expect(replies.every((m) => m.taskId === ack.taskId)).toBe(true);
      expect(replies.filter((m) => m.type === 'TOKEN').length).toBeGreaterThan(0);
      expect(end).toMatchObject({ type: 'COMPLETE', finishReason: 'length' });
      expect(end.result).toBe(textOf(replies));
      expect(end.usage).toMatchObject({ completion_tokens: tokens });
      const job = await stack.waitForJob(keys.acme!, ack.taskId!);
      expect(job).toMatchObject({ status: 'completed', result: end.result });
    }
    expect((await stack.waitForJob(keys.acme!, end2.taskId!)).metadata).toEqual({ via: 'ws' });
  });

  it('answers a repeated deterministic prompt from the cache, through the same envelopes', async () => {
    const client = await connect(stack.apiUrl, keys.acme!);
    const prompt = { type: 'PROMPT', content: 'cache me over a socket', temperature: 0, max_tokens: 12 };
    client.send({ ...prompt, id: 'first' });
    const first = await client.finished('first');
    client.send({ ...prompt, id: 'again' });
    const again = await client.finished('again');
    expect(client.of('again')[0]).toMatchObject({ type: 'ACK', status: 'completed' });
    expect(again).toMatchObject({ type: 'COMPLETE', result: first.result, source: 'redis' });
    expect(textOf(client.of('again'))).toBe(first.result);
  });

  it('answers malformed and unknown messages with an ERROR and keeps the connection', async () => {
    const client = await connect(stack.apiUrl, keys.acme!);
    const errorWith = (code: string) =>
      client.waitFor((m) => m.type === 'ERROR' && m.code === code, `an ERROR ${code}`);

    client.send('this is not json');
    await errorWith('malformed_json');
    client.send('[1, 2, 3]');
    await errorWith('invalid_message');
    client.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    await errorWith('unsupported_media_type');
    client.send({ type: 'SHOUT', id: 'u1' });
    expect(await errorWith('unknown_type')).toMatchObject({ id: 'u1', field: 'type' });
    client.send({ type: 'PROMPT', id: 'p1', content: 'hi', max_token: 5 });
    expect(await client.waitFor((m) => m.id === 'p1', 'p1 refused')).toMatchObject({
      type: 'ERROR',
      code: 'invalid_request',
      field: 'max_token',
    });
    client.send({ type: 'PROMPT', id: 'p2', content: '' });
    expect(await client.waitFor((m) => m.id === 'p2', 'p2 refused')).toMatchObject({
      type: 'ERROR',
      code: 'invalid_request',
      field: 'content',
    });
    client.send({ type: 'PROMPT', id: 'p3', content: 'hi', model: 'no-such-model' });
    expect(await client.waitFor((m) => m.id === 'p3', 'p3 refused')).toMatchObject({
      type: 'ERROR',
      code: 'model_not_found',
      status: 422,
    });
    expect(client.received.some((m) => m.type === 'ACK')).toBe(false);

    // Still open and working.
    client.send({ type: 'PING', id: 'still-there' });
    expect(await client.waitFor((m) => m.id === 'still-there', 'PONG')).toEqual({
      type: 'PONG',
      id: 'still-there',
    });
    client.send({ type: 'PROMPT', id: 'works', content: 'after all that', max_tokens: 5 });
    expect(await client.finished('works')).toMatchObject({ type: 'COMPLETE' });
  });

  it('cancels a running task: CANCELLED for the CANCEL, ERROR cancelled for the task', async () => {
    const client = await connect(stack.apiUrl, keys.acme!);
    client.send({ type: 'PROMPT', id: 'long', content: 'a very long answer', max_tokens: 5000 });
    const ack = await client.waitFor((m) => m.id === 'long' && m.type === 'ACK', 'ACK');
    await client.waitFor((m) => m.id === 'long' && m.type === 'TOKEN', 'a first token');

    client.send({ type: 'CANCEL', id: 'stop', taskId: ack.taskId });
    expect(await client.waitFor((m) => m.id === 'stop', 'the CANCEL answer')).toEqual({
      type: 'CANCELLED',
      id: 'stop',
      taskId: ack.taskId,
      status: 'cancelled',
    });
    expect(await client.finished('long')).toMatchObject({
      type: 'ERROR',
      taskId: ack.taskId,
      code: 'cancelled',
    });
    expect((await stack.waitForJob(keys.acme!, ack.taskId!)).status).toBe('cancelled');

    // Another tenant's job is as unknown as a made-up one.
    const theirs = await stack.submit(keys.globex!, { prompt: 'not yours', max_tokens: 5 });
    client.send({ type: 'CANCEL', id: 'not-mine', taskId: theirs.body.jobId });
    client.send({ type: 'CANCEL', id: 'made-up', taskId: randomUUID() });
    for (const id of ['not-mine', 'made-up']) {
      expect(await client.waitFor((m) => m.id === id, `${id} answered`)).toMatchObject({
        type: 'ERROR',
        code: 'not_found',
        status: 404,
      });
    }
  });
});

describe('resuming a task on another connection', () => {
  it('SUBSCRIBE after a reconnect sends the events after the last seq seen, to the end', async () => {
    const first = await connect(stack.apiUrl, keys.acme!);
    first.send({ type: 'PROMPT', id: 'p', content: 'a long answer to resume', max_tokens: 200 });
    const ack = await first.waitFor((m) => m.id === 'p' && m.type === 'ACK', 'ACK');
    await first.waitFor((m) => m.id === 'p' && m.type === 'TOKEN', 'a first token');
    // The connection drops mid-answer; the task goes on in the fleet.
    first.ws.terminate();
    await first.closed;
    const seen = first.of('p').filter((m) => m.type === 'TOKEN');
    const lastSeq = seen.at(-1)!.seq as number;

    const second = await connect(stack.apiUrl, keys.acme!);
    second.send({ type: 'SUBSCRIBE', id: 's', taskId: ack.taskId, afterSeq: lastSeq });
    const end = await second.finished('s');
    expect(second.of('s')[0]).toMatchObject({ type: 'ACK', taskId: ack.taskId });
    const rest = second.of('s').filter((m) => m.type === 'TOKEN');
    expect(rest.every((m) => (m.seq as number) > lastSeq)).toBe(true);
    // Nothing lost, nothing twice: the two connections' text is the whole answer.
    expect(end).toMatchObject({ type: 'COMPLETE', taskId: ack.taskId });
    expect(textOf(seen) + textOf(rest)).toBe(end.result);

    // A finished task replays from Postgres; from its end there is nothing more, and the task
    // does not hold a place in the connection's bound.
    second.send({ type: 'SUBSCRIBE', id: 'again', taskId: ack.taskId });
    expect(await second.finished('again')).toMatchObject({ type: 'COMPLETE', result: end.result });
    const endSeq = Math.max(...second.of('s').map((m) => (m.seq as number | undefined) ?? 0));
    second.send({ type: 'SUBSCRIBE', id: 'past', taskId: ack.taskId, afterSeq: 1_000_000 });
    await second.waitFor((m) => m.id === 'past' && m.type === 'ACK', 'ACK of a subscription past the end');
    second.send({ type: 'PING', id: 'after' });
    await second.waitFor((m) => m.id === 'after' && m.type === 'PONG', 'PONG');
    expect(second.of('past').filter((m) => m.type !== 'ACK')).toEqual([]);
    expect(endSeq).toBeGreaterThan(lastSeq);

    // Another tenant's task is as unknown as a made-up one.
    const theirs = await stack.submit(keys.globex!, { prompt: 'not yours', max_tokens: 5 });
    second.send({ type: 'SUBSCRIBE', id: 'not-mine', taskId: theirs.body.jobId });
    second.send({ type: 'SUBSCRIBE', id: 'bad-seq', taskId: ack.taskId, afterSeq: -1 });
    expect(await second.waitFor((m) => m.id === 'not-mine', 'answered')).toMatchObject({
      type: 'ERROR',
      code: 'not_found',
    });
    expect(await second.waitFor((m) => m.id === 'bad-seq', 'answered')).toMatchObject({
      type: 'ERROR',
      code: 'invalid_request',
      field: 'afterSeq',
    });
  });
});

describe('authentication at the upgrade', () => {
  it('refuses a missing, wrong or revoked key with 401 and upgrades nothing', async () => {
    const repo = new ApiKeyRepository(stack.pool);
    const revoked = await repo.create('acme');
    await repo.revoke(revoked.record.id);
    const attempts: Record<string, string>[] = [
      {},
      { authorization: 'Bearer llmq_not-a-real-key' },
      { authorization: 'Basic abc' },
      { authorization: `Bearer ${revoked.key}` },
      { 'sec-websocket-protocol': `llmq, bearer.${revoked.key}` },
    ];
    for (const headers of attempts) {
      const answer = await tryUpgrade(stack.apiUrl, headers);
      expect({ headers, upgraded: answer.upgraded, status: answer.status }).toEqual({
        headers,
        upgraded: false,
        status: 401,
      });
      expect(answer.headers['www-authenticate']).toBe('Bearer realm="llmq"');
      expect(JSON.parse(answer.body)).toMatchObject({ status: 401, code: 'unauthorized' });
    }
    expect(
      await tryUpgrade(stack.apiUrl, { authorization: `Bearer ${keys.acme}` }, '/elsewhere'),
    ).toMatchObject({
      upgraded: false,
      status: 404,
    });
    const ok = await tryUpgrade(stack.apiUrl, { authorization: `Bearer ${keys.acme}` });
    ok.socket?.destroy();
    expect(ok).toMatchObject({ upgraded: true, status: 101 });
  });

  it('takes the key as a subprotocol from browsers, and never echoes it', async () => {
    const client = await connect(stack.apiUrl, null, { protocols: ['llmq', `bearer.${keys.acme}`] });
    expect(client.ws.protocol).toBe('llmq');
    client.send({ type: 'PROMPT', id: 'b', content: 'from a browser', max_tokens: 3 });
    expect(await client.finished('b')).toMatchObject({ type: 'COMPLETE' });
  });

  it('ends the connection of a key revoked while it is open', async () => {
    const repo = new ApiKeyRepository(stack.pool);
    const { key, record } = await repo.create('acme');
    const client = await connect(stack.apiUrl, key);
    await repo.revoke(record.id);
    const { Redis } = await import('ioredis');
    const redis = new Redis(stack.redisUrl);
    await markKeyRevoked(redis, 'llmq', record.tenantId, record.id).finally(() => redis.disconnect());

    client.send({ type: 'PROMPT', id: 'late', content: 'still allowed?', max_tokens: 3 });
    expect(await client.waitFor((m) => m.id === 'late', 'the refusal')).toMatchObject({
      type: 'ERROR',
      code: 'unauthorized',
      status: 401,
    });
    expect((await client.closed).code).toBe(1008);
  });
});

describe('limits', () => {
  let tightUrl: string;
  beforeAll(async () => {
    ({ url: tightUrl } = await stack.startExtraApi({
      WS_MAX_TASKS_PER_CONNECTION: '2',
      WS_MAX_PAYLOAD_BYTES: '4096',
    }));
  });

  it('refuses a task past the connection bound with RATE_LIMITED, and takes one again once a task ends', async () => {
    const client = await connect(tightUrl, keys.acme!);
    for (const id of ['t1', 't2', 't3']) {
      client.send({ type: 'PROMPT', id, content: `slow ${id}`, max_tokens: 4000 });
    }
    expect(await client.waitFor((m) => m.id === 't3', 't3 answered')).toMatchObject({
      type: 'RATE_LIMITED',
      code: 'too_many_tasks',
      retryAfterMs: null,
    });
    const acks = await Promise.all(
      ['t1', 't2'].map((id) => client.waitFor((m) => m.id === id && m.type === 'ACK', `${id} ACK`)),
    );
    client.send({ type: 'CANCEL', taskId: acks[0]!.taskId });
    await client.finished('t1');
    client.send({ type: 'PROMPT', id: 't4', content: 'room again', max_tokens: 4000 });
    const t4 = await client.waitFor((m) => m.id === 't4', 't4 answered');
    expect(t4.type).toBe('ACK');
    for (const task of [acks[1]!, t4]) client.send({ type: 'CANCEL', taskId: task.taskId });
    await Promise.all([client.finished('t2'), client.finished('t4')]);
  });

  it("answers the key's rate limit (429) with RATE_LIMITED and when to retry", async () => {
    const limited = await stack.createKey('acme', { requestsPerMinute: 1 });
    const client = await connect(stack.apiUrl, limited);
    client.send({ type: 'PROMPT', id: 'one', content: 'the only one', max_tokens: 3 });
    client.send({ type: 'PROMPT', id: 'two', content: 'one too many', max_tokens: 3 });
    const refused = await client.waitFor((m) => m.id === 'two', 'the second answered');
    expect(refused).toMatchObject({ type: 'RATE_LIMITED', code: 'rate_limit_exceeded' });
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(await client.finished('one')).toMatchObject({ type: 'COMPLETE' });
  });

  it('closes a connection that sends a message past the size limit with 1009', async () => {
    const client = await connect(tightUrl, keys.acme!);
    client.send({ type: 'PROMPT', id: 'huge', content: 'x'.repeat(5000) });
    expect((await client.closed).code).toBe(1009);
    expect(client.of('huge')).toEqual([]);
  });
});

describe('heartbeats', () => {
  it('drops a client that never answers pings, and keeps one that does', async () => {
    const { url } = await stack.startExtraApi({ WS_HEARTBEAT_MS: '300' });
    const live = await connect(url, keys.acme!);
    let livePings = 0;
    live.ws.on('ping', () => livePings++);
    await eventually(async () => livePings >= 1, 'the live client was pinged');

    // Completes the handshake, then reads (and counts) frames but never writes: no pong.
    const silent = await tryUpgrade(url, { authorization: `Bearer ${keys.acme}` });
    expect(silent.upgraded).toBe(true);
    const socket = silent.socket!;
    let frames = silent.head ?? Buffer.alloc(0);
    let silentPings = 0;
    socket.on('data', (chunk: Buffer) => {
      frames = Buffer.concat([frames, chunk]);
      // Server frames are unmasked; pings carry no payload here.
      while (frames.length >= 2 && frames.length >= 2 + (frames[1]! & 0x7f)) {
        if ((frames[0]! & 0x0f) === 0x9) silentPings++;
        frames = frames.subarray(2 + (frames[1]! & 0x7f));
      }
    });
    await new Promise((resolve) => socket.once('close', resolve));

    expect(silentPings).toBeGreaterThanOrEqual(1);
    expect(await metric(url, 'llmq_ws_closes_total{reason="heartbeat"}')).toBe(1);
    expect(live.ws.readyState).toBe(WebSocket.OPEN);
    expect(livePings).toBeGreaterThanOrEqual(2);
    live.send({ type: 'PING', id: 'alive' });
    await live.waitFor((m) => m.type === 'PONG', 'PONG');
  });
});

describe('backpressure', () => {
  const TASKS = 12;
  /** A client whose socket stops reading, then a dozen prompts of about 0.45 MB of text each. */
  async function floodPausedClient(url: string): Promise<{ client: Client; socket: Socket; run: string }> {
    const client = await connect(url, keys.bulk!);
    // The kernel's buffers fill first (a few MB on loopback), then the server's.
    const socket = (client.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    const run = randomUUID();
    for (let i = 0; i < TASKS; i++) {
      // Each is sent twice (TOKENs, then COMPLETE): about 10 MB in all.
      client.send({
        type: 'PROMPT',
        id: `big-${i}`,
        model: FAST_MODEL,
        content: `flood ${i}`,
        max_tokens: 65_536,
        metadata: { run },
      });
    }
    return { client, socket, run };
  }
  const tightBuffer = { WS_HIGH_WATER_BYTES: '16384', WS_HEARTBEAT_MS: '10m' };

  it('joins the tokens of a client that falls behind, and every task still adds up to its result', async () => {
    const { url } = await stack.startExtraApi({
      ...tightBuffer,
      WS_MAX_BUFFERED_BYTES: String(64 * 1_048_576),
    });
    const { client, socket, run } = await floodPausedClient(url);
    const jobs = await eventually(
      async () => {
        const { rows } = await stack.pool.query<{ id: string }>(
          `SELECT id FROM jobs WHERE metadata->>'run' = $1 AND status = 'completed'`,
          [run],
        );
        return rows.length === TASKS ? rows.map((r) => r.id) : undefined;
      },
      'every flood job completed while the client was not reading',
      120_000,
    );
    socket.resume();
    const ends = await Promise.all(Array.from({ length: TASKS }, (_, i) => client.finished(`big-${i}`)));
    let tokenEvents = 0;
    for (const [i, end] of ends.entries()) {
      expect(end.type).toBe('COMPLETE');
      expect(jobs).toContain(end.taskId);
      expect(textOf(client.of(`big-${i}`))).toBe(end.result);
      const stream = await readSse(`${url}/api/jobs/${end.taskId}/stream`, {
        headers: { authorization: `Bearer ${keys.bulk}` },
      });
      tokenEvents += stream.events.filter((e) => e.event === 'token').length;
    }
    // Tokens that waited were sent joined: fewer frames than the jobs had token events.
    expect(client.received.filter((m) => m.type === 'TOKEN').length).toBeLessThan(tokenEvents);
  }, 240_000);

  it('closes a client that stopped reading with 1008 once its buffer passes the cap', async () => {
    const { url } = await stack.startExtraApi({ ...tightBuffer, WS_MAX_BUFFERED_BYTES: '1048576' });
    const { client, socket } = await floodPausedClient(url);
    await eventually(
      async () => (await metric(url, 'llmq_ws_closes_total{reason="slow_consumer"}')) === 1,
      'the server closed the slow client',
      120_000,
    );
    socket.resume();
    const closed = await client.closed;
    expect(closed).toEqual({ code: 1008, reason: 'slow consumer: send buffer limit reached' });
    // What was buffered arrives, then the close: the rest was dropped, not kept for it.
    expect(client.received.filter((m) => m.type === 'COMPLETE').length).toBeLessThan(TASKS);
    await eventually(async () => (await metric(url, 'llmq_ws_connections')) === 0, 'the socket is gone');
    // The jobs do not depend on the connection: they finish in the fleet.
    const acked = client.received.filter((m) => m.type === 'ACK');
    expect(acked.length).toBeGreaterThan(0);
    for (const ack of acked) {
      expect((await stack.waitForJob(keys.bulk!, ack.taskId!, undefined, 120_000)).status).toBe('completed');
    }
  }, 240_000);
});

describe('metrics and shutdown', () => {
  it('counts open connections and messages by type', async () => {
    await eventually(
      async () => (await metric(stack.apiUrl, 'llmq_ws_connections')) === 0,
      'no open sockets',
    );
    const before = await metric(stack.apiUrl, 'llmq_ws_messages_total{direction="in",type="PING"}');
    const a = await connect(stack.apiUrl, keys.acme!);
    const b = await connect(stack.apiUrl, keys.acme!);
    await eventually(
      async () => (await metric(stack.apiUrl, 'llmq_ws_connections')) === 2,
      'two open sockets',
    );
    a.send({ type: 'PING', id: 1 });
    b.send({ type: 'PING', id: 2 });
    await Promise.all([
      a.waitFor((m) => m.type === 'PONG', 'PONG'),
      b.waitFor((m) => m.type === 'PONG', 'PONG'),
    ]);
    expect(await metric(stack.apiUrl, 'llmq_ws_messages_total{direction="in",type="PING"}')).toBe(before + 2);
    expect(
      await metric(stack.apiUrl, 'llmq_ws_messages_total{direction="out",type="PONG"}'),
    ).toBeGreaterThanOrEqual(2);
    a.ws.close();
    b.ws.close();
    await eventually(async () => (await metric(stack.apiUrl, 'llmq_ws_connections')) === 0, 'closed again');
    expect(await metric(stack.apiUrl, 'llmq_ws_closes_total{reason="client"}')).toBeGreaterThanOrEqual(2);
  });

  it('closes sockets with 1001 on SIGTERM, and their tasks finish in the fleet', async () => {
    const extra = await stack.startExtraApi();
    const client = await connect(extra.url, keys.acme!);
    client.send({ type: 'PROMPT', id: 'survivor', content: 'outlive the API', max_tokens: 200 });
    const ack = await client.waitFor((m) => m.id === 'survivor' && m.type === 'ACK', 'ACK');
    const exit = extra.process.stop('SIGTERM');
    expect((await client.closed).code).toBe(1001);
    expect(await exit).toBe(0);
    expect((await stack.waitForJob(keys.acme!, ack.taskId!)).status).toBe('completed');
  });
});

describe('configuration', () => {
  const base = {
    REDIS_URL: 'redis://127.0.0.1:6379',
    DATABASE_URL: 'postgres://u:p@127.0.0.1/db',
    PROVIDERS_FILE: '/etc/llmq/providers.yaml',
  };
  it('has bounded defaults and refuses a cap below the high-water mark', () => {
    expect(wsSettingsFrom(parseEnv(apiEnvSchema, base))).toEqual({
      heartbeatMs: 30_000,
      maxPayloadBytes: 1_048_576,
      maxTasksPerConnection: 16,
      highWaterBytes: 65_536,
      maxBufferedBytes: 4_194_304,
    });
    const env = parseEnv(apiEnvSchema, {
      ...base,
      WS_HIGH_WATER_BYTES: '65536',
      WS_MAX_BUFFERED_BYTES: '4096',
    });
    expect(() => wsSettingsFrom(env)).toThrow(
      /WS_MAX_BUFFERED_BYTES \(4096\) must be larger than WS_HIGH_WATER_BYTES/,
    );
    expect(() => parseEnv(apiEnvSchema, { ...base, WS_MAX_TASKS_PER_CONNECTION: '0' })).toThrow(
      /WS_MAX_TASKS_PER_CONNECTION/,
    );
  });
});
