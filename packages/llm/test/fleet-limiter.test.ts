/**
 * Fleet-wide provider limits against a real Redis: several connections stand for several
 * workers, and the budget holds however they interleave. Timing assertions are ranges whose
 * bounds come from the bucket math and the measured elapsed time, never exact milliseconds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startRedisServer, type RedisServerHandle } from '@llmq/embedded';
import { Redis } from 'ioredis';
import {
  NEVER_FITS,
  RedisFleetLimiter,
  UnlimitedLimiter,
  type Admission,
  type BackendLimits,
  type Reservation,
} from '../src/fleet-limiter';

const PREFIX = 'llmq-test';
let server: RedisServerHandle;
let dataDir: string;
let redis: Redis;
const connections: Redis[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'llmq-fleet-limiter-'));
  server = await startRedisServer({ port: await freePort(), dataDir });
  redis = connect();
});

afterAll(async () => {
  await Promise.all(connections.map((c) => c.quit().catch(() => undefined)));
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

function connect(): Redis {
  const connection = new Redis(server.url);
  connections.push(connection);
  return connection;
}

let seq = 0;
/** A backend id of its own for each test, so no test sees another's buckets. */
function backend(name: string): string {
  seq += 1;
  return `${name}-${seq}`;
}

function limiter(connection: Redis = redis): RedisFleetLimiter {
  return new RedisFleetLimiter(connection, { prefix: PREFIX });
}

const key = (backendId: string, kind: 'req' | 'tok') => `${PREFIX}:limits:{${backendId}}:${kind}`;

function admitted(a: Admission): Reservation {
  if (!a.ok) throw new Error(`expected an admission, got a rejection (${a.reason}, ${a.retryAfterMs} ms)`);
  return a.reservation;
}

function rejected(a: Admission): { retryAfterMs: number; reason: 'requests' | 'tokens' } {
  if (a.ok) throw new Error('expected a rejection, got an admission');
  return a;
}

/** Runs `fn` and returns its result with an upper bound of the ms Redis saw pass meanwhile. */
async function timed<T>(fn: () => Promise<T>): Promise<{ result: T; elapsed: number }> {
  const started = Date.now();
  const result = await fn();
  return { result, elapsed: Date.now() - started + 1 };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('admission', () => {
  it('three workers asking 25 times at once get exactly the 10 requests per minute, the rest a wait for the next', async () => {
    const workers = [connect(), connect(), connect()];
    await Promise.all(workers.map((w) => w.ping()));
    const limiters = workers.map((w) => limiter(w));
    const id = backend('rpm');
    const limits: BackendLimits = { requestsPerMinute: 10 };

    const { result: answers, elapsed } = await timed(() =>
      Promise.all(Array.from({ length: 25 }, (_, i) => limiters[i % 3]!.acquire(id, limits, 100))),
    );

    expect(answers.filter((a) => a.ok)).toHaveLength(10);
    const rejections = answers.filter((a) => !a.ok).map(rejected);
    expect(rejections).toHaveLength(15);
    for (const r of rejections) {
      expect(r.reason).toBe('requests');
      // the next request drains in 60000 / 10 ms, less what drained while the calls ran
      expect(r.retryAfterMs).toBeLessThanOrEqual(6000);
      expect(r.retryAfterMs).toBeGreaterThanOrEqual(6000 - elapsed);
    }
  });

  it('1000 tokens per minute admit three reservations of 300; the fourth waits for the 200 missing', async () => {
    const fleet = limiter();
    const id = backend('tpm');
    const limits: BackendLimits = { tokensPerMinute: 1000 };

    const { result, elapsed } = await timed(async () => {
      const answers: Admission[] = [];
      for (let i = 0; i < 4; i++) answers.push(await fleet.acquire(id, limits, 300));
      return answers;
    });

    expect(result.slice(0, 3).map((a) => a.ok)).toEqual([true, true, true]);
    const fourth = rejected(result[3]!);
    expect(fourth.reason).toBe('tokens');
    // 200 tokens at 1000 per 60000 ms
    expect(fourth.retryAfterMs).toBeLessThanOrEqual(12_000);
    expect(fourth.retryAfterMs).toBeGreaterThanOrEqual(12_000 - elapsed);
  });

  it('a request larger than the whole token budget is refused for good, not told to wait', async () => {
    const fleet = limiter();
    const id = backend('too-large');
    const limits: BackendLimits = { requestsPerMinute: 100, tokensPerMinute: 1000 };

    expect(await fleet.acquire(id, limits, 1001)).toEqual({
      ok: false,
      retryAfterMs: NEVER_FITS,
      reason: 'tokens',
    });
    // it took nothing: the whole budget is still there
    admitted(await fleet.acquire(id, limits, 1000));
    expect(await fleet.acquire(id, { requestsPerMinute: 0 }, 1)).toEqual({
      ok: false,
      retryAfterMs: NEVER_FITS,
      reason: 'requests',
    });
  });

  it('a rejection takes nothing: the bucket is untouched and what still fits is admitted', async () => {
    const fleet = limiter();
    const id = backend('no-take');
    const limits: BackendLimits = { requestsPerMinute: 3, tokensPerMinute: 1000 };

    admitted(await fleet.acquire(id, limits, 800));
    const before = { req: await redis.hgetall(key(id, 'req')), tok: await redis.hgetall(key(id, 'tok')) };
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = rejected(await fleet.acquire(id, limits, 500));
      expect(r.reason).toBe('tokens');
      waits.push(r.retryAfterMs);
    }
    expect({ req: await redis.hgetall(key(id, 'req')), tok: await redis.hgetall(key(id, 'tok')) }).toEqual(
      before,
    );
    // each rejection is no further from admission than the one before
    for (let i = 1; i < waits.length; i++) expect(waits[i]).toBeLessThanOrEqual(waits[i - 1]!);

    // the 200 tokens and 2 requests left are all still there
    admitted(await fleet.acquire(id, limits, 200));
    admitted(await fleet.acquire(id, limits, 0));
    expect(rejected(await fleet.acquire(id, limits, 0)).reason).toBe('requests');
  });

  it('when both limits are short, the answer is the longer wait, named by its limit', async () => {
    const fleet = limiter();
    const id = backend('both');
    const limits: BackendLimits = { requestsPerMinute: 1, tokensPerMinute: 1000 };
    admitted(await fleet.acquire(id, limits, 100));
    // requests: 60000 ms; tokens: 100 missing = 6000 ms
    const r = rejected(await fleet.acquire(id, limits, 1000));
    expect(r.reason).toBe('requests');
    expect(r.retryAfterMs).toBeGreaterThan(59_000);
    expect(r.retryAfterMs).toBeLessThanOrEqual(60_000);
  });
});

describe('refill', () => {
  it('tokens come back continuously, and a call fits once its retryAfterMs has passed', async () => {
    const fleet = limiter();
    const id = backend('refill-tokens');
    const limits: BackendLimits = { tokensPerMinute: 60_000 }; // one token per ms

    const { result: first, elapsed } = await timed(async () => {
      admitted(await fleet.acquire(id, limits, 60_000));
      return rejected(await fleet.acquire(id, limits, 400));
    });
    expect(first.retryAfterMs).toBeLessThanOrEqual(400);
    expect(first.retryAfterMs).toBeGreaterThanOrEqual(400 - elapsed);

    await sleep(150);
    const second = rejected(await fleet.acquire(id, limits, 400));
    expect(second.retryAfterMs).toBeLessThanOrEqual(first.retryAfterMs - 148); // timers may fire a ms early

    await sleep(second.retryAfterMs + 20);
    admitted(await fleet.acquire(id, limits, 400));
  });

  it('requests come back one at a time', async () => {
    const fleet = limiter();
    const id = backend('refill-requests');
    const limits: BackendLimits = { requestsPerMinute: 600 }; // one request per 100 ms

    const burst = await Promise.all(Array.from({ length: 600 }, () => fleet.acquire(id, limits, 1)));
    expect(burst.every((a) => a.ok)).toBe(true);
    const started = Date.now();
    const r = rejected(await fleet.acquire(id, limits, 1));
    expect(r.retryAfterMs).toBeLessThanOrEqual(100);

    await sleep(r.retryAfterMs + 10);
    let admittedAfterWait = 0;
    while ((await fleet.acquire(id, limits, 1)).ok) admittedAfterWait += 1;
    const elapsed = Date.now() - started + 1;
    expect(admittedAfterWait).toBeGreaterThanOrEqual(1);
    // less than one request was free at the rejection, and one more drains every 100 ms
    expect(admittedAfterWait).toBeLessThanOrEqual(Math.floor(elapsed / 100) + 1);
  });

  it('keys are per backend, carry a TTL until their bucket is full again, then vanish', async () => {
    const fleet = limiter();
    const id = backend('ttl');
    admitted(await fleet.acquire(id, { requestsPerMinute: 10, tokensPerMinute: 1000 }, 300));
    const [reqTtl, tokTtl] = [await redis.pttl(key(id, 'req')), await redis.pttl(key(id, 'tok'))];
    expect(reqTtl).toBeGreaterThan(5_000); // 1 request at 10 per minute drains in 6000 ms
    expect(reqTtl).toBeLessThanOrEqual(6_000);
    expect(tokTtl).toBeGreaterThan(17_000); // 300 tokens at 1000 per minute drain in 18000 ms
    expect(tokTtl).toBeLessThanOrEqual(18_000);

    const quick = backend('ttl-quick');
    admitted(await fleet.acquire(quick, { requestsPerMinute: 600 }, 1));
    expect(await redis.exists(key(quick, 'req'))).toBe(1);
    await sleep(150);
    expect(await redis.exists(key(quick, 'req'))).toBe(0);
  });
});

describe('settle', () => {
  it('gives back the tokens a call did not use', async () => {
    const fleet = limiter();
    const id = backend('refund');
    const limits: BackendLimits = { tokensPerMinute: 1000 };

    const { result, elapsed } = await timed(async () => {
      const reservation = admitted(await fleet.acquire(id, limits, 1000));
      await fleet.settle(reservation, limits, 400);
      admitted(await fleet.acquire(id, limits, 600));
      return rejected(await fleet.acquire(id, limits, 60));
    });
    // without the refund the 600 would not have fitted; now 60 tokens are 3600 ms away
    expect(result.retryAfterMs).toBeLessThanOrEqual(3600);
    expect(result.retryAfterMs).toBeGreaterThanOrEqual(3600 - elapsed);
  });

  it('charges the overage as debt that later calls wait for', async () => {
    const fleet = limiter();
    const id = backend('overage');
    const limits: BackendLimits = { tokensPerMinute: 1000 };

    const { result, elapsed } = await timed(async () => {
      const reservation = admitted(await fleet.acquire(id, limits, 500));
      await fleet.settle(reservation, limits, 1300);
      return rejected(await fleet.acquire(id, limits, 1));
    });
    // 1300 used + 1 wanted - 1000 allowed = 301 tokens at 1000 per minute
    expect(result.reason).toBe('tokens');
    expect(result.retryAfterMs).toBeLessThanOrEqual(18_060);
    expect(result.retryAfterMs).toBeGreaterThanOrEqual(18_060 - elapsed);
  });

  it('a refund never fills the bucket above its capacity', async () => {
    const fleet = limiter();
    const id = backend('refund-cap');
    const limits: BackendLimits = { tokensPerMinute: 6000 }; // one token per 10 ms

    const reservation = admitted(await fleet.acquire(id, limits, 30));
    await sleep(350); // the 30 tokens have come back by themselves
    await fleet.settle(reservation, limits, 0);
    expect(await redis.exists(key(id, 'tok'))).toBe(0);

    admitted(await fleet.acquire(id, limits, 6000));
    // had the refund been kept as credit beyond capacity, these 30 would fit
    expect(rejected(await fleet.acquire(id, limits, 30)).reason).toBe('tokens');
  });

  it('does nothing for a backend without a token limit', async () => {
    const fleet = limiter();
    const id = backend('settle-unlimited');
    const reservation = admitted(await fleet.acquire(id, { requestsPerMinute: 5 }, 100));
    await fleet.settle(reservation, { requestsPerMinute: 5 }, 5000);
    expect(await redis.exists(key(id, 'tok'))).toBe(0);
  });
});

describe('limits', () => {
  it('no limits means every call is admitted without touching Redis', async () => {
    const fleet = limiter();
    const id = backend('unlimited');
    const answers = await Promise.all(Array.from({ length: 100 }, () => fleet.acquire(id, {}, 1e9)));
    expect(answers.every((a) => a.ok)).toBe(true);
    expect(await redis.keys(`${PREFIX}:limits:{${id}}:*`)).toEqual([]);

    // only the limit that is set is metered
    admitted(await fleet.acquire(id, { requestsPerMinute: 1 }, 1e9));
    expect(await redis.keys(`${PREFIX}:limits:{${id}}:*`)).toEqual([key(id, 'req')]);
  });

  it('a raised request limit applies at once to what was used', async () => {
    const fleet = limiter();
    const id = backend('raised');

    admitted(await fleet.acquire(id, { requestsPerMinute: 2 }, 1));
    admitted(await fleet.acquire(id, { requestsPerMinute: 2 }, 1));
    expect(rejected(await fleet.acquire(id, { requestsPerMinute: 2 }, 1)).retryAfterMs).toBeGreaterThan(
      29_000,
    );

    for (let i = 0; i < 3; i++) admitted(await fleet.acquire(id, { requestsPerMinute: 5 }, 1));
    const r = rejected(await fleet.acquire(id, { requestsPerMinute: 5 }, 1));
    expect(r.retryAfterMs).toBeGreaterThan(11_000); // the next of 5 per minute: 12000 ms
    expect(r.retryAfterMs).toBeLessThanOrEqual(12_000);
  });

  it('a lowered token limit counts what was already used against the new one', async () => {
    const fleet = limiter();
    const id = backend('lowered');

    admitted(await fleet.acquire(id, { tokensPerMinute: 1000 }, 600));
    const r = rejected(await fleet.acquire(id, { tokensPerMinute: 500 }, 1));
    // 600 used + 1 - 500 = 101 tokens at 500 per minute
    expect(r.retryAfterMs).toBeGreaterThan(11_000);
    expect(r.retryAfterMs).toBeLessThanOrEqual(12_120);
    expect(rejected(await fleet.acquire(id, { tokensPerMinute: 500 }, 501)).retryAfterMs).toBe(NEVER_FITS);
    // and a raised one lets a formerly too large request through
    admitted(await fleet.acquire(backend('raised-tpm'), { tokensPerMinute: 2000 }, 1500));
  });

  it('the in-process UnlimitedLimiter admits everything', async () => {
    const fleet = new UnlimitedLimiter();
    const limits: BackendLimits = { requestsPerMinute: 1, tokensPerMinute: 1 };
    const first = admitted(await fleet.acquire('any', limits, 1e6));
    admitted(await fleet.acquire('any', limits, 1e6));
    expect(first).toMatchObject({ backendId: 'any', tokens: 1e6 });
    await expect(fleet.settle(first, limits, 5)).resolves.toBeUndefined();
  });
});

describe('failures', () => {
  it('acquire rejects when Redis cannot be reached, leaving the choice to the caller', async () => {
    const down = new Redis({
      port: await freePort(),
      lazyConnect: true,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    try {
      const fleet = limiter(down);
      await expect(fleet.acquire('x', { requestsPerMinute: 10 }, 1)).rejects.toThrow();
      // without a limit there is nothing to ask Redis
      admitted(await fleet.acquire('x', {}, 1));
    } finally {
      down.disconnect();
    }
  });

  it('nonsense limits and token counts are refused before Redis is asked', async () => {
    const fleet = limiter();
    await expect(fleet.acquire('x', { requestsPerMinute: -1 }, 1)).rejects.toThrow(RangeError);
    await expect(fleet.acquire('x', { tokensPerMinute: Number.NaN }, 1)).rejects.toThrow(RangeError);
    await expect(fleet.acquire('x', { tokensPerMinute: 10 }, -5)).rejects.toThrow(RangeError);
  });
});
