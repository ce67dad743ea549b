import net from 'node:net';
import path from 'node:path';
import {
  freePort,
  locateRedisServer,
  ProcessStartError,
  redisAnswers,
  RedisServerNotFoundError,
  startRedisServer,
  type RedisServerHandle,
} from '../src';
import { parseRedisUrl, redisCommands, type RespValue } from '../src/resp';
import { tempDirs } from './helpers';

const dirs = tempDirs();
const running: RedisServerHandle[] = [];

async function redis(url: string, ...command: string[]): Promise<RespValue> {
  const [reply] = await redisCommands(parseRedisUrl(url), [command], 5_000);
  return reply ?? null;
}

async function start(options: Parameters<typeof startRedisServer>[0]): Promise<RedisServerHandle> {
  const handle = await startRedisServer(options);
  running.push(handle);
  return handle;
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((handle) => handle.stop()));
  dirs.cleanup();
});

describe('locateRedisServer', () => {
  it('finds redis-server on this machine', async () => {
    const binary = await locateRedisServer();
    expect(path.basename(binary)).toBe('redis-server');
  });

  it('says what to install when redis-server is missing and installing is not allowed', async () => {
    const empty = dirs.make();
    const attempt = locateRedisServer({ searchDirs: [empty], installIfMissing: false });
    await expect(attempt).rejects.toBeInstanceOf(RedisServerNotFoundError);
    await expect(attempt).rejects.toThrow(/apt-get install redis-server/);
  });
});

describe('startRedisServer', () => {
  it('runs redis-server with AOF and noeviction in the given directory', async () => {
    const dataDir = dirs.make();
    const server = await start({ dataDir });
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    expect(await redis(server.url, 'CONFIG', 'GET', 'maxmemory-policy')).toEqual([
      'maxmemory-policy',
      'noeviction',
    ]);
    expect(await redis(server.url, 'CONFIG', 'GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    expect(await redis(server.url, 'CONFIG', 'GET', 'appendfsync')).toEqual(['appendfsync', 'everysec']);
    expect(await redis(server.url, 'CONFIG', 'GET', 'dir')).toEqual(['dir', dataDir]);
    const info = await redis(server.url, 'INFO', 'server');
    expect(info).toContain(`process_id:${server.pid}`);
  });

  it('keeps a key across a clean stop and a restart on the same port and directory', async () => {
    const dataDir = dirs.make();
    const first = await start({ dataDir });
    expect(await redis(first.url, 'SET', 'job:1', 'accepted')).toBe('OK');
    await first.stop();
    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(await redisAnswers(first.url, 300)).toBe(false);

    const second = await start({ dataDir, port: first.port });
    expect(second.url).toBe(first.url);
    expect(await redis(second.url, 'GET', 'job:1')).toBe('accepted');
  });

  it('keeps a key written a second before redis-server is SIGKILLed', async () => {
    const dataDir = dirs.make();
    const first = await start({ dataDir });
    expect(await redis(first.url, 'SET', 'job:2', 'accepted')).toBe('OK');
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // appendfsync everysec
    first.kill('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });

    const second = await start({ dataDir, port: first.port });
    expect(await redis(second.url, 'GET', 'job:2')).toBe('accepted');
  });

  it('does not keep data when appendOnly is false and honours the eviction policy it is given', async () => {
    const dataDir = dirs.make();
    const first = await start({ dataDir, appendOnly: false, maxmemoryPolicy: 'allkeys-lru' });
    expect(await redis(first.url, 'CONFIG', 'GET', 'maxmemory-policy')).toEqual([
      'maxmemory-policy',
      'allkeys-lru',
    ]);
    await redis(first.url, 'SET', 'cache:1', 'x');
    await first.stop();
    const second = await start({ dataDir, port: first.port, appendOnly: false });
    expect(await redis(second.url, 'GET', 'cache:1')).toBeNull();
  });

  it('fails with redis-server output when the port is taken', async () => {
    const blocker = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const attempt = startRedisServer({ dataDir: dirs.make(), port });
      await expect(attempt).rejects.toBeInstanceOf(ProcessStartError);
      await expect(attempt).rejects.toThrow(/Address already in use/);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});

describe('redisAnswers', () => {
  it('is true for a running redis and false where nothing listens', async () => {
    const server = await start({ dataDir: dirs.make() });
    expect(await redisAnswers(server.url)).toBe(true);
    expect(await redisAnswers(`redis://127.0.0.1:${await freePort()}`, 500)).toBe(false);
  });

  it('authenticates with the password in the URL', async () => {
    const server = await start({ dataDir: dirs.make(), password: 's3cret/+' });
    expect(server.url).toBe(`redis://:s3cret%2F%2B@127.0.0.1:${server.port}`);
    expect(await redisAnswers(server.url)).toBe(true);
    expect(await redisAnswers(`redis://:wrong@127.0.0.1:${server.port}`)).toBe(false);
    expect(await redisAnswers(`redis://127.0.0.1:${server.port}`)).toBe(false);
  });

  it('counts a server whose password came through extraArgs as started', async () => {
    const server = await start({ dataDir: dirs.make(), extraArgs: ['--requirepass', 'other'] });
    expect(await redisAnswers(`redis://:other@127.0.0.1:${server.port}`)).toBe(true);
  });

  it('is false for a server that does not speak RESP', async () => {
    const silent = net.createServer((socket) =>
      socket.on('data', () => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n')),
    );
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      expect(await redisAnswers(`redis://127.0.0.1:${(silent.address() as net.AddressInfo).port}`, 500)).toBe(
        false,
      );
    } finally {
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
