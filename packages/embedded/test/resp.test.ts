import { encodeCommand, parseRedisUrl, parseReply, RespError } from '../src/resp';

describe('the RESP subset', () => {
  it('encodes commands as arrays of bulk strings, counting bytes not characters', () => {
    expect(encodeCommand(['SET', 'k', 'é']).toString()).toBe('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n');
  });

  it('parses each reply type and waits for incomplete ones', () => {
    expect(parseReply(Buffer.from('+PONG\r\n'))).toEqual(['PONG', 7]);
    expect(parseReply(Buffer.from(':42\r\n'))).toEqual([42, 5]);
    expect(parseReply(Buffer.from('$-1\r\n'))).toEqual([null, 5]);
    expect(parseReply(Buffer.from('*2\r\n$1\r\na\r\n$2\r\nbc\r\n'))).toEqual([['a', 'bc'], 19]);
    const [error] = parseReply(Buffer.from('-LOADING Redis is loading\r\n')) ?? [];
    expect(error).toBeInstanceOf(RespError);
    expect((error as RespError).message).toBe('LOADING Redis is loading');
    expect(parseReply(Buffer.from('$5\r\nhel'))).toBeUndefined();
    expect(parseReply(Buffer.from('*2\r\n$1\r\na\r\n'))).toBeUndefined();
  });

  it('reads credentials, TLS and defaults from redis URLs', () => {
    expect(parseRedisUrl('redis://localhost')).toEqual({
      host: 'localhost',
      port: 6379,
      tls: false,
      username: undefined,
      password: undefined,
    });
    expect(parseRedisUrl('rediss://u%40x:p%3Aw@[::1]:7000/2')).toEqual({
      host: '::1',
      port: 7000,
      tls: true,
      username: 'u@x',
      password: 'p:w',
    });
    expect(() => parseRedisUrl('http://localhost:6379')).toThrow(/not a redis/);
  });
});
