/**
 * When tracing is on (the OTEL_ conventions, off by default), and that with it off the helpers
 * the apps call on every job are no-ops that still run the work.
 */
import { currentTraceCarrier, startTracing, tracingEnabled, withSpan } from '../src';

describe('tracingEnabled', () => {
  test.each([
    [{}, false],
    [{ OTEL_TRACES_EXPORTER: 'none' }, false],
    [{ OTEL_TRACES_EXPORTER: 'otlp' }, true],
    [{ OTEL_TRACES_EXPORTER: 'console' }, true],
    [{ OTEL_TRACES_EXPORTER: 'none,console' }, true],
    [{ OTEL_TRACES_EXPORTER: '  ' }, false],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, true],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }, true],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_TRACES_EXPORTER: 'none' }, false],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }, false],
    [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_SDK_DISABLED: 'TRUE' }, false],
    [{ OTEL_TRACES_EXPORTER: 'otlp', OTEL_SDK_DISABLED: 'false' }, true],
  ])('%j → %s', (env, expected) => {
    expect(tracingEnabled(env)).toBe(expected);
  });
});

describe('with tracing off', () => {
  test('startTracing does nothing', async () => {
    const tracing = startTracing('test', {});
    expect(tracing.enabled).toBe(false);
    await tracing.shutdown();
  });

  test('spans run their work and pass errors through; no context is carried', async () => {
    expect(currentTraceCarrier()).toBeUndefined();
    await expect(
      withSpan('work', { kind: 'producer' }, async () => currentTraceCarrier()),
    ).resolves.toBeUndefined();
    await expect(
      withSpan(
        'fails',
        { parent: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } },
        () => Promise.reject(new Error('boom')),
      ),
    ).rejects.toThrow('boom');
  });
});
