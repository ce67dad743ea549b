import { CacheControlError, cacheKey, canonicalJson, isDeterministic, parseCacheControl } from '@llmq/cache';

const spec = (params = {}, content = 'hi', model = 'm') => ({
  model,
  messages: [{ role: 'user' as const, content }],
  params,
});

describe('cache keys', () => {
  it('are stable across key order and differ with any input or scope', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: undefined }] })).toBe('{"a":[{"d":2}],"b":1}');
    const k = cacheKey('tenant:a', spec({ temperature: 0, max_tokens: 5 }));
    expect(cacheKey('tenant:a', spec({ max_tokens: 5, temperature: 0 }))).toBe(k);
    const others = [
      cacheKey('tenant:b', spec({ temperature: 0, max_tokens: 5 })),
      cacheKey('tenant:a', spec({ temperature: 0, max_tokens: 6 })),
      cacheKey('tenant:a', spec({ temperature: 0, max_tokens: 5 }, 'hi!')),
      cacheKey('tenant:a', spec({ temperature: 0, max_tokens: 5 }, 'hi', 'n')),
      cacheKey('tenant:a', spec({ temperature: 0, max_tokens: 5, stop: 'x' })),
    ];
    expect(new Set([k, ...others]).size).toBe(6);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
  });

  it('cover deterministic requests only', () => {
    expect(isDeterministic(spec({ temperature: 0 }))).toBe(true);
    expect(isDeterministic(spec({ temperature: 0.7, seed: 3 }))).toBe(true);
    expect(isDeterministic(spec({ temperature: 0.7 }))).toBe(false);
    expect(isDeterministic(spec({}))).toBe(false);
  });
});

describe('Cache-Control', () => {
  it('reads the request directives', () => {
    expect(parseCacheControl(undefined)).toEqual({
      read: true,
      store: true,
      onlyIfCached: false,
      maxAgeSeconds: null,
    });
    expect(parseCacheControl('no-cache, no-store')).toMatchObject({ read: false, store: false });
    expect(parseCacheControl('only-if-cached, max-age=60')).toMatchObject({
      onlyIfCached: true,
      maxAgeSeconds: 60,
    });
  });
  it('rejects what it does not understand', () => {
    expect(() => parseCacheControl('max-age=-1')).toThrow(CacheControlError);
    expect(() => parseCacheControl('forever')).toThrow('unknown Cache-Control directive "forever"');
    expect(() => parseCacheControl('no-cache, only-if-cached')).toThrow('contradict');
  });
});
