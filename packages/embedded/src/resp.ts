/**
 * Just enough of the Redis protocol (RESP2) to ask a server whether it is up, without a
 * client library: spawning Redis must work before any Redis client is configured.
 */
import net from 'node:net';
import tls from 'node:tls';

export interface RedisTarget {
  host: string;
  port: number;
  tls: boolean;
  username: string | undefined;
  password: string | undefined;
}

/** An error reply (`-ERR ...`, `-LOADING ...`, `-NOAUTH ...`). */
export class RespError {
  constructor(readonly message: string) {}
}

export type RespValue = string | number | null | RespError | RespValue[];

/** Reads `redis://[[user]:password@]host[:port][/db]` (or `rediss://` for TLS). */
export function parseRedisUrl(url: string): RedisTarget {
  const parsed = new URL(url);
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new TypeError(`not a redis:// or rediss:// URL: ${url}`);
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  return {
    host,
    port: parsed.port ? Number(parsed.port) : 6379,
    tls: parsed.protocol === 'rediss:',
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
  };
}

export function encodeCommand(args: readonly string[]): Buffer {
  const parts = [`*${args.length}\r\n`];
  for (const arg of args) parts.push(`$${Buffer.byteLength(arg)}\r\n${arg}\r\n`);
  return Buffer.from(parts.join(''));
}

/** Parses one reply at `offset`; undefined while the buffer holds only part of it. */
export function parseReply(buf: Buffer, offset = 0): [RespValue, number] | undefined {
  const lineEnd = buf.indexOf('\r\n', offset);
  if (lineEnd < 0) return undefined;
  const type = buf[offset];
  const line = buf.toString('utf8', offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case 0x2b: // '+'
      return [line, next];
    case 0x2d: // '-'
      return [new RespError(line), next];
    case 0x3a: // ':'
      return [Number(line), next];
    case 0x24: {
      // '$'
      const length = Number(line);
      if (length < 0) return [null, next];
      if (buf.length < next + length + 2) return undefined;
      return [buf.toString('utf8', next, next + length), next + length + 2];
    }
    case 0x2a: {
      // '*'
      const count = Number(line);
      if (count < 0) return [null, next];
      const items: RespValue[] = [];
      let position = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, position);
        if (!item) return undefined;
        items.push(item[0]);
        position = item[1];
      }
      return [items, position];
    }
    default:
      throw new Error(`unexpected RESP reply type byte ${String(type)}`);
  }
}

/**
 * Sends `commands` pipelined on a fresh connection and resolves with one reply per
 * command (error replies are values, not rejections). Rejects on connection errors or
 * when all replies have not arrived within `timeoutMs`.
 */
export function redisCommands(
  target: RedisTarget,
  commands: readonly (readonly string[])[],
  timeoutMs: number,
): Promise<RespValue[]> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.concat(commands.map(encodeCommand));
    const socket = target.tls
      ? tls.connect(
          {
            host: target.host,
            port: target.port,
            servername: net.isIP(target.host) ? undefined : target.host,
          },
          () => socket.write(payload),
        )
      : net.connect({ host: target.host, port: target.port }, () => socket.write(payload));
    let buffer = Buffer.alloc(0);
    let offset = 0;
    const replies: RespValue[] = [];
    const finish = (error: Error | undefined) => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on('error', () => {});
      socket.destroy();
      if (error) reject(error);
      else resolve(replies);
    };
    const timer = setTimeout(
      () => finish(new Error(`no reply from redis at ${target.host}:${target.port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      try {
        for (let reply = parseReply(buffer, offset); reply; reply = parseReply(buffer, offset)) {
          replies.push(reply[0]);
          offset = reply[1];
          if (replies.length === commands.length) return finish(undefined);
        }
      } catch (error) {
        finish(error as Error);
      }
    });
    socket.on('error', (error) => finish(error));
    socket.on('close', () =>
      finish(new Error(`redis at ${target.host}:${target.port} closed the connection`)),
    );
  });
}
