import { percentile, summarize } from '../lib/stats';
import { stageAt, targetAt } from '../lib/stages';
import { evaluateThresholds } from '../lib/thresholds';

describe('percentiles, computed as k6 computes p(N) of a Trend', () => {
  it('interpolate linearly between the two closest ranks', () => {
    expect(percentile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(percentile([10, 20], 0.9)).toBeCloseTo(19, 10);
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(hundred, 0.95)).toBeCloseTo(95.05, 10);
    expect(percentile(hundred, 0.99)).toBeCloseTo(99.01, 10);
    expect(percentile(hundred, 0)).toBe(1);
    expect(percentile(hundred, 1)).toBe(100);
  });

  it('sort their input numerically (not as strings)', () => {
    expect(percentile([100, 9, 20, 3], 0.5)).toBe(14.5);
  });

  it('give the one value for one sample, and NaN for none', () => {
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile([], 0.5)).toBeNaN();
  });

  it('summarize every statistic a threshold may name', () => {
    expect(summarize([4, 1, 3, 2])).toEqual({
      count: 4,
      min: 1,
      avg: 2.5,
      med: 2.5,
      max: 4,
      p50: 2.5,
      p90: expect.closeTo(3.7, 10),
      p95: expect.closeTo(3.85, 10),
      p99: expect.closeTo(3.97, 10),
    });
    expect(summarize([]).count).toBe(0);
    expect(summarize([]).p95).toBeNaN();
  });
});

describe('thresholds', () => {
  const figures = {
    acceptMs: summarize([5, 10, 15]),
    ttftMs: summarize([]),
    completionMs: summarize([1000, 2000]),
    errorRate: 0.05,
  };

  it('pass only when the figure is strictly below the bound, and read as k6 thresholds', () => {
    const results = evaluateThresholds(
      { acceptMs: { p99: 15, max: 15 }, completionMs: { med: 1600 }, errorRate: 0.05 },
      figures,
    );
    expect(results.map(({ k6, ok }) => ({ k6, ok }))).toEqual([
      { k6: 'llmq_accept_ms: p(99)<15', ok: true }, // p99 of 5, 10, 15 is 14.9
      { k6: 'llmq_accept_ms: max<15', ok: false }, // equal is not below
      { k6: 'llmq_completion_ms: med<1600', ok: true },
      { k6: 'llmq_errors: rate<0.05', ok: false },
    ]);
  });

  it('fail on a metric without samples rather than pass on vacuous truth', () => {
    const [ttft] = evaluateThresholds({ ttftMs: { p95: 1e9 } }, figures);
    expect(ttft).toMatchObject({ ok: false, value: NaN });
  });
});

describe('stages', () => {
  const stages = [
    { durationMs: 10_000, target: 10 },
    { durationMs: 10_000, target: 10 },
    { durationMs: 5_000, target: 0 },
  ];

  it('ramp linearly from 0, hold, and ramp down, as k6 ramping-vus does', () => {
    expect(
      [0, 2_500, 5_000, 10_000, 15_000, 20_000, 22_500, 25_000, 30_000].map((t) => targetAt(stages, t)),
    ).toEqual([0, 3, 5, 10, 10, 10, 5, 0, 0]);
  });

  it('say which stage runs, and none after the last', () => {
    expect([0, 9_999, 10_000, 24_999, 25_000].map((t) => stageAt(stages, t))).toEqual([1, 1, 2, 3, null]);
  });
});
