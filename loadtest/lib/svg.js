// @ts-check
/**
 * Line charts as standalone SVG files, written by hand: a report must open in any browser or
 * Markdown viewer without a chart library, and four kinds of chart do not justify one.
 */

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];
const MARGIN = { top: 56, right: 24, bottom: 44, left: 64 };

/**
 * @typedef {{ name: string, points: Array<[number, number | null]>, color?: string }} Series
 * @typedef {{ title: string, yLabel: string, xLabel?: string, series: Series[],
 *             width?: number, height?: number, xMax?: number,
 *             formatY?: (value: number) => string }} ChartOptions
 */

/** @param {string} text */
function escapeXml(text) {
  return text.replace(
    /[<>&"']/g,
    (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', '"': 'quot', "'": 'apos' }[c]};`,
  );
}

/**
 * About `count` round tick values from 0 to at least `max`: steps of 1, 2 or 5 times a power of ten.
 * @param {number} max
 * @param {number} [count]
 */
function niceTicks(max, count = 5) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const ticks = [];
  for (let v = 0; v < max + step / 2; v += step) ticks.push(roundTo(v, step));
  if ((ticks.at(-1) ?? 0) < max) ticks.push(roundTo((ticks.at(-1) ?? 0) + step, step));
  return ticks;
}

/**
 * Removes floating-point noise (0.30000000000000004) from a multiple of `step`.
 * @param {number} value
 * @param {number} step
 */
function roundTo(value, step) {
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  return Number(value.toFixed(Math.min(digits, 12)));
}

/**
 * 1234 as "1.2k", 0.25 as "0.25".
 * @param {number} value
 */
function compactNumber(value) {
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e3) return `${trim(value / 1e3)}k`;
  return trim(value);
}

/** @param {number} value */
function trim(value) {
  return String(Number(value.toFixed(Math.abs(value) >= 10 ? 0 : 2)));
}

/**
 * @param {ChartOptions} options
 * @returns {string} a complete SVG document
 */
function lineChart({ title, yLabel, xLabel = 'time (s)', series, width = 760, height = 300, xMax, formatY }) {
  const fmt = formatY ?? compactNumber;
  const plot = { w: width - MARGIN.left - MARGIN.right, h: height - MARGIN.top - MARGIN.bottom };
  const defined = series.flatMap((s) => s.points.filter((p) => isNumber(p[1])));
  const xs = [...series.flatMap((s) => s.points.map((p) => p[0])), ...(xMax === undefined ? [] : [xMax])];
  const xTicks = niceTicks(Math.max(0, ...xs), 8);
  const xTop = /** @type {number} */ (xTicks.at(-1));
  const yTicks = niceTicks(Math.max(0, ...defined.map((p) => /** @type {number} */ (p[1]))));
  const yTop = /** @type {number} */ (yTicks.at(-1));
  const x = (/** @type {number} */ v) => MARGIN.left + (v / xTop) * plot.w;
  const y = (/** @type {number} */ v) => MARGIN.top + plot.h - (v / yTop) * plot.h;

  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(title)}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${MARGIN.left}" y="20" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    ...legend(series),
    ...grid(yTicks, y, fmt, plot.w),
    ...xAxis(xTicks, x, y(0)),
    `<text x="${MARGIN.left + plot.w / 2}" y="${height - 6}" text-anchor="middle">${escapeXml(xLabel)}</text>`,
    `<text transform="translate(14 ${MARGIN.top + plot.h / 2}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`,
  ];
  if (defined.length === 0) {
    parts.push(
      `<text x="${MARGIN.left + plot.w / 2}" y="${MARGIN.top + plot.h / 2}" text-anchor="middle" fill="#888888">no data</text>`,
    );
  }
  series.forEach((s, i) => parts.push(...line(s, s.color ?? colorOf(i), x, y)));
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** @param {unknown} v */
function isNumber(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

/** @param {number} i */
function colorOf(i) {
  return /** @type {string} */ (PALETTE[i % PALETTE.length]);
}

/** @param {Series[]} series */
function legend(series) {
  let at = MARGIN.left;
  return series.map((s, i) => {
    const item = `<g><rect x="${at}" y="30" width="12" height="12" fill="${s.color ?? colorOf(i)}"/><text x="${at + 16}" y="40">${escapeXml(s.name)}</text></g>`;
    at += 28 + s.name.length * 7;
    return item;
  });
}

/**
 * Horizontal grid lines with their values.
 * @param {number[]} ticks
 * @param {(v: number) => number} y
 * @param {(v: number) => string} fmt
 * @param {number} plotWidth
 */
function grid(ticks, y, fmt, plotWidth) {
  return ticks.map(
    (t) =>
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${px(y(t))}" y2="${px(y(t))}" stroke="#e0e0e0"/>` +
      `<text x="${MARGIN.left - 6}" y="${px(y(t) + 4)}" text-anchor="end">${escapeXml(fmt(t))}</text>`,
  );
}

/**
 * @param {number[]} ticks
 * @param {(v: number) => number} x
 * @param {number} baseline
 */
function xAxis(ticks, x, baseline) {
  return [
    `<line x1="${MARGIN.left}" x2="${px(x(ticks.at(-1) ?? 0))}" y1="${px(baseline)}" y2="${px(baseline)}" stroke="#444444"/>`,
    ...ticks.map(
      (t) =>
        `<text x="${px(x(t))}" y="${px(baseline + 16)}" text-anchor="middle">${escapeXml(compactNumber(t))}</text>`,
    ),
  ];
}

/**
 * A series as a polyline broken where values are missing; lone points as dots.
 * @param {Series} s
 * @param {string} color
 * @param {(v: number) => number} x
 * @param {(v: number) => number} y
 */
function line(s, color, x, y) {
  /** @type {string[][]} */
  const runs = [[]];
  for (const [px_, py] of s.points) {
    if (!isNumber(py)) {
      if ((runs.at(-1) ?? []).length > 0) runs.push([]);
      continue;
    }
    runs.at(-1)?.push(`${px(x(px_))},${px(y(/** @type {number} */ (py)))}`);
  }
  return runs
    .filter((r) => r.length > 0)
    .map((r) => {
      if (r.length === 1) {
        const [cx, cy] = /** @type {string} */ (r[0]).split(',');
        return `<circle cx="${cx}" cy="${cy}" r="2.5" fill="${color}"><title>${escapeXml(s.name)}</title></circle>`;
      }
      return `<polyline fill="none" stroke="${color}" stroke-width="1.8" points="${r.join(' ')}"><title>${escapeXml(s.name)}</title></polyline>`;
    });
}

/**
 * Pixel coordinates with one decimal: enough for a chart, and short files.
 * @param {number} v
 */
function px(v) {
  return Math.round(v * 10) / 10;
}

module.exports = { lineChart, niceTicks, escapeXml, compactNumber };
