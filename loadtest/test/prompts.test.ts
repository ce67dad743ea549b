import { createPromptSource, vuRandom } from '../lib/prompts';
import { logUniformInt, mulberry32, weightedPicker } from '../lib/random';
import { loadScenario } from '../lib/scenario';

/**
 * Pearson's chi-square statistic of observed counts against expected shares. With 3 degrees of
 * freedom (four classes) a fair sampler stays below 16.27 in 999 runs of 1000; with a fixed seed
 * the outcome is the same on every run, so this is a property check, not a flaky one.
 */
function chiSquare(counts: number[], shares: number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.reduce((sum, observed, i) => {
    const expected = total * (shares[i] ?? 0);
    return sum + (observed - expected) ** 2 / expected;
  }, 0);
}

describe('weighted picking', () => {
  it('picks each class in proportion to its weight (40/30/20/10)', () => {
    const pick = weightedPicker([40, 30, 20, 10]);
    const random = mulberry32(42);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 100_000; i += 1) counts[pick(random)]! += 1;
    expect(chiSquare(counts, [0.4, 0.3, 0.2, 0.1])).toBeLessThan(16.27);
    counts.forEach((n, i) => expect(Math.abs(n / 100_000 - [0.4, 0.3, 0.2, 0.1][i]!)).toBeLessThan(0.01));
  });

  it('never picks a class of weight 0, and weights need not sum to 100', () => {
    const pick = weightedPicker([3, 0, 1]);
    const random = mulberry32(1);
    const counts = [0, 0, 0];
    for (let i = 0; i < 20_000; i += 1) counts[pick(random)]! += 1;
    expect(counts[1]).toBe(0);
    expect(chiSquare([counts[0]!, counts[2]!], [0.75, 0.25])).toBeLessThan(10.83); // 1 dof, p = 0.001
  });

  it('refuses weights that cannot be a distribution', () => {
    expect(() => weightedPicker([0, 0])).toThrow(/positive sum/);
    expect(() => weightedPicker([1, -1, 3])).toThrow(/non-negative/);
    expect(() => weightedPicker([])).toThrow();
  });
});

describe('prompt lengths', () => {
  it('are log-uniform: within bounds, and short ones more common than long ones', () => {
    const random = mulberry32(7);
    const values = Array.from({ length: 20_000 }, () => logUniformInt(random, 150, 1500));
    expect(Math.min(...values)).toBeGreaterThanOrEqual(150);
    expect(Math.max(...values)).toBeLessThanOrEqual(1500);
    const sorted = [...values].sort((a, b) => a - b);
    // The median of a log-uniform on [150, 1501) is the geometric mean, about 475, far below 825.
    expect(sorted[10_000]).toBeGreaterThan(430);
    expect(sorted[10_000]).toBeLessThan(520);
  });
});

describe('the seed-mix corpus', () => {
  const { prompts } = loadScenario('seed-mix');
  const byName = Object.fromEntries(prompts.map((p) => [p.name, p]));

  it('sends the four tasks at the seed ratios, each prompt within its length and max_tokens bounds', () => {
    const next = createPromptSource(prompts, vuRandom(1, 1));
    const counts: Record<string, number> = {};
    const outOfBounds: string[] = [];
    for (let i = 0; i < 20_000; i += 1) {
      const request = next();
      const spec = byName[request.className]!;
      counts[request.className] = (counts[request.className] ?? 0) + 1;
      const within =
        request.words >= spec.words.min &&
        request.words <= spec.words.max &&
        request.maxTokens >= spec.maxTokens.min &&
        request.maxTokens <= spec.maxTokens.max &&
        spec.templates.some((t) => request.prompt.startsWith(t.slice(0, t.indexOf('{text}'))));
      if (!within) outOfBounds.push(JSON.stringify({ ...request, prompt: request.prompt.slice(0, 80) }));
    }
    expect(outOfBounds).toEqual([]);
    const names = ['summary', 'product_description', 'sentiment', 'technical'];
    expect(
      chiSquare(
        names.map((n) => counts[n] ?? 0),
        [0.4, 0.3, 0.2, 0.1],
      ),
    ).toBeLessThan(16.27);
  });

  it('fills a template with exactly the sampled number of words', () => {
    const next = createPromptSource([byName.sentiment!], mulberry32(3));
    for (let i = 0; i < 200; i += 1) {
      const request = next();
      const text = request.prompt.split('\n\nReview: ')[1] ?? request.prompt.split(':\n\n')[1]!;
      expect(text.split(' ')).toHaveLength(request.words);
    }
  });

  it('sends the same prompts for the same seed and user, and different ones for another user', () => {
    const sequence = (seed: number, vu: number) => {
      const next = createPromptSource(prompts, vuRandom(seed, vu));
      return Array.from({ length: 20 }, () => next().prompt);
    };
    expect(sequence(5, 1)).toEqual(sequence(5, 1));
    expect(sequence(5, 2)).not.toEqual(sequence(5, 1));
    expect(sequence(6, 1)).not.toEqual(sequence(5, 1));
  });
});
