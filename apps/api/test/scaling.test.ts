import { parseEnv } from '@llmq/config';
import { metricsEnvSchema } from '../src/metrics';
import { advise, scalingReport } from '../src/scaling';

const t = { scaleUpPressure: 5, scaleUpWaiting: 100, scaleDownMaxActive: 2 };

describe('scaling advice', () => {
  it('scales up past the pressure or the waiting threshold, and whenever jobs wait with no worker', () => {
    expect(advise({ waiting: 1, active: 0, workers: 0 }, t)).toMatchObject({
      advice: 'scale_up',
      queuePressure: 1,
      reason: '1 jobs wait and no worker consumes them',
    });
    expect(advise({ waiting: 12, active: 4, workers: 2 }, t)).toMatchObject({
      advice: 'scale_up',
      queuePressure: 6,
    });
    expect(advise({ waiting: 10, active: 4, workers: 2 }, t)).toMatchObject({
      advice: 'hold',
      queuePressure: 5,
    });
    expect(advise({ waiting: 101, active: 200, workers: 50 }, t)).toMatchObject({ advice: 'scale_up' });
  });

  it('scales down when nothing waits and little runs; holds otherwise', () => {
    expect(advise({ waiting: 0, active: 1, workers: 3 }, t).advice).toBe('scale_down');
    expect(advise({ waiting: 0, active: 2, workers: 3 }, t).advice).toBe('hold');
    // No worker to take away.
    expect(advise({ waiting: 0, active: 0, workers: 0 }, t).advice).toBe('hold');
  });

  it("reports the seed article's shape: sums over the queues, pressure, failure rate and the booleans", () => {
    const report = scalingReport(
      [
        { name: 'generate', waiting: 9, active: 2, delayed: 1, completed: 90, failed: 6, workers: 2 },
        { name: 'generate-batch', waiting: 3, active: 0, delayed: 0, completed: 0, failed: 4, workers: 1 },
        { name: 'ingest', waiting: 0, active: 0, delayed: 0, completed: 0, failed: 0, workers: 2 },
      ],
      2,
      t,
      new Date('2030-01-01T00:00:00Z'),
    );
    expect(report).toEqual({
      queue: { waiting: 12, active: 2, delayed: 1, completed: 90, failed: 10 },
      workers: 2,
      scaling: {
        queuePressure: 6,
        failureRate: 0.1,
        shouldScaleUp: true,
        shouldScaleDown: false,
        advice: 'scale_up',
        reason: 'queue pressure 6 (waiting jobs per worker) is above 5',
        thresholds: t,
      },
      queues: expect.any(Array),
      measuredAt: '2030-01-01T00:00:00.000Z',
    });
  });
});

describe('metrics, readiness and scaling settings', () => {
  it("default to an open /metrics, no readiness limits and the seed article's thresholds", () => {
    expect(parseEnv(metricsEnvSchema, {})).toEqual({
      READY_MAX_ACTIVE_REQUESTS: 0,
      READY_MAX_EVENT_LOOP_LAG_MS: 0,
      DRAIN_DELAY_MS: 0,
      SCALE_UP_QUEUE_PRESSURE: 5,
      SCALE_UP_WAITING: 100,
      SCALE_DOWN_MAX_ACTIVE: 2,
    });
    expect(
      parseEnv(metricsEnvSchema, { DRAIN_DELAY_MS: '5s', SCALE_UP_QUEUE_PRESSURE: '2.5' }),
    ).toMatchObject({
      DRAIN_DELAY_MS: 5000,
      SCALE_UP_QUEUE_PRESSURE: 2.5,
    });
  });

  it('refuse a short metrics token and negative limits', () => {
    expect(() => parseEnv(metricsEnvSchema, { METRICS_TOKEN: 'short' })).toThrow(/METRICS_TOKEN/);
    expect(() => parseEnv(metricsEnvSchema, { READY_MAX_ACTIVE_REQUESTS: '-1' })).toThrow(
      /READY_MAX_ACTIVE_REQUESTS/,
    );
    expect(() => parseEnv(metricsEnvSchema, { SCALE_UP_QUEUE_PRESSURE: '0' })).toThrow(
      /SCALE_UP_QUEUE_PRESSURE/,
    );
  });
});
