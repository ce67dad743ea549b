import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Recorder, type Iteration } from '../lib/recorder';
import { writeReport } from '../lib/report';
import { loadScenario } from '../lib/scenario';
import { lineChart, niceTicks } from '../lib/svg';
import { evaluateThresholds } from '../lib/thresholds';

const NAME = '[A-Za-z_][\\w.:-]*';
const ENTITY = /&(?:lt|gt|amp|quot|apos|#\d+|#x[0-9a-f]+);/gi;
const TAG = new RegExp(`^<(/?)(${NAME})((?:\\s+${NAME}="[^"<]*")*)\\s*(/?)>$`);

/**
 * Checks that `xml` is well-formed (one root, every tag closed in order, attributes quoted, no
 * bare < or & in text or values) and returns its element names in document order. Enough XML for
 * what lib/svg.js writes; no parser dependency needed.
 */
function wellFormed(xml: string): string[] {
  const elements: string[] = [];
  const open: string[] = [];
  let roots = 0;
  for (const token of xml.match(/<[^>]*>|[^<]+/g) ?? []) {
    if (!token.startsWith('<')) {
      if (token.replace(ENTITY, '').includes('&')) throw new Error(`bare & in text: ${token}`);
      if (open.length === 0 && token.trim() !== '') throw new Error(`text outside the root: ${token}`);
      continue;
    }
    const match = TAG.exec(token);
    if (!match) throw new Error(`malformed tag: ${token}`);
    const [, closing, name, attributes, selfClosing] = match;
    if ((attributes ?? '').replace(ENTITY, '').includes('&'))
      throw new Error(`bare & in attributes: ${token}`);
    if (closing) {
      if (open.pop() !== name) throw new Error(`</${name}> closes nothing open`);
      continue;
    }
    if (open.length === 0) roots += 1;
    elements.push(name!);
    if (!selfClosing) open.push(name!);
  }
  if (open.length > 0) throw new Error(`unclosed: ${open.join(', ')}`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
  return elements;
}

describe('SVG line charts', () => {
  it('are well-formed SVG documents, with markup in titles and names escaped', () => {
    const svg = lineChart({
      title: 'p95 <accept> & "ttft"',
      yLabel: 'ms',
      series: [
        {
          name: "a'b<c>",
          points: [
            [0, 1],
            [1, 2],
            [2, 3],
          ],
        },
      ],
    });
    const elements = wellFormed(svg);
    expect(elements[0]).toBe('svg');
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    expect(svg).toContain('<title>p95 &lt;accept&gt; &amp; &quot;ttft&quot;</title>');
    expect(svg).toContain('a&apos;b&lt;c&gt;');
  });

  it('break a line where values are missing and draw a lone value as a dot', () => {
    const svg = lineChart({
      title: 't',
      yLabel: 'ms',
      series: [
        {
          name: 's',
          points: [
            [0, 1],
            [1, 2],
            [2, null],
            [3, 4],
            [4, 5],
            [5, null],
            [6, 7],
          ],
        },
      ],
    });
    const elements = wellFormed(svg);
    expect(elements.filter((e) => e === 'polyline')).toHaveLength(2);
    expect(elements.filter((e) => e === 'circle')).toHaveLength(1);
  });

  it('keep every point inside the plot area', () => {
    const svg = lineChart({
      title: 't',
      yLabel: 'ms',
      width: 700,
      height: 300,
      series: [
        { name: 's', points: Array.from({ length: 50 }, (_, i): [number, number] => [i, (i * 37) % 1000]) },
      ],
    });
    const coordinates = [...svg.matchAll(/points="([^"]+)"/g)].flatMap((m) =>
      m[1]!.split(' ').map((p) => p.split(',').map(Number)),
    );
    expect(coordinates).toHaveLength(50);
    for (const [x, y] of coordinates) {
      expect(x).toBeGreaterThanOrEqual(64);
      expect(x).toBeLessThanOrEqual(700 - 24);
      expect(y).toBeGreaterThanOrEqual(56);
      expect(y).toBeLessThanOrEqual(300 - 44);
    }
  });

  it('say "no data" rather than draw an empty frame', () => {
    const svg = lineChart({ title: 't', yLabel: 'ms', series: [{ name: 's', points: [] }] });
    wellFormed(svg);
    expect(svg).toContain('>no data</text>');
  });

  it('put round numbers on the axes', () => {
    expect(niceTicks(7)).toEqual([0, 2, 4, 6, 8]);
    expect(niceTicks(1234)).toEqual([0, 500, 1000, 1500]);
    expect(niceTicks(0.3)).toEqual([0, 0.1, 0.2, 0.3]);
    expect(niceTicks(0)).toEqual([0, 1]);
  });
});

describe('the report folder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'llmq-loadtest-report-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A 10 s run: one completion a second, every third one failing with a 429 after 5 s. */
  function recorded(): Recorder {
    const recorder = new Recorder();
    for (let s = 0; s < 10; s += 1) {
      const failed = s >= 5 && s % 3 === 0;
      const iteration: Iteration = {
        start: s * 1000,
        end: s * 1000 + 800,
        className: s % 2 ? 'summary' : 'technical',
        acceptMs: failed ? null : 5 + s,
        ttftMs: failed ? null : 200 + s,
        completionMs: failed ? null : 700 + s,
        error: failed ? 'http_429' : null,
        cached: false,
        interrupted: false,
      };
      recorder.started();
      recorder.record(iteration);
      recorder.queueSample({ t: s * 1000, waiting: s, active: 2, delayed: 0 });
      recorder.vuSample({ t: s * 1000, vus: 3, target: 3 });
    }
    return recorder;
  }

  it('holds report.md, summary.json and seven well-formed charts, and says which thresholds failed', () => {
    const scenario = loadScenario('smoke');
    const recorder = recorded();
    const thresholds = evaluateThresholds({ completionMs: { p95: 1 }, errorRate: 0.5 }, recorder.totals());
    const files = writeReport(dir, {
      scenario,
      target: { kind: 'remote', url: 'http://api.example' },
      recorder,
      thresholds,
      startedAt: new Date('2025-01-01T00:00:00Z'),
      runMs: 10_000,
    });

    expect(readdirSync(dir).sort()).toEqual([...files].sort());
    const charts = files.filter((f) => f.endsWith('.svg'));
    expect(charts).toHaveLength(7);
    for (const chart of charts) expect(wellFormed(readFileSync(join(dir, chart), 'utf8'))[0]).toBe('svg');

    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    expect(summary.passed).toBe(false);
    expect(summary.requests).toMatchObject({ completed: 8, failed: 2, errorsByType: { http_429: 2 } });
    expect(summary.queue.maxWaiting).toBe(9);

    const report = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(report).toMatch(/^# Load test `smoke`: FAILED/);
    // Completions 700..708 ms but 706 (a failure): p95 interpolates 707 + 0.65 = 707.65.
    expect(report).toContain('| completionMs | p95 < 1 | `llmq_completion_ms: p(95)<1` | 708 | **FAIL** |');
    expect(report).toContain('| errorRate | rate < 0.5 | `llmq_errors: rate<0.5` | 20.00 % | pass |');
    expect(report).toContain('| http_429 | 2 | 20.00 % |');
    for (const chart of charts) expect(report).toContain(`](${chart})`);
  });
});
