/**
 * SVG plots written by hand (no dependency): line charts with axes, ticks and a legend; grouped bar charts with
 * error bars; and a grid layout that puts several panels in one file.
 */
import type { EpochRecord } from './trainer.js';

export interface Series {
  name: string;
  points: [number, number][];
  /** Error half-widths per point (drawn as a band). */
  err?: number[];
  dashed?: boolean;
  color?: string;
}

export interface Panel {
  /** SVG elements drawn in a box of `width` × `height` at the origin. */
  body: string;
  width: number;
  height: number;
}

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (v: number): string => {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  return String(Number(v.toPrecision(3)));
};

/** About `count` round tick values covering [lo, hi], at least `minStep` apart (1: integers only, for epochs). */
export function ticks(lo: number, hi: number, count = 5, minStep = 0): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count, mag = 10 ** Math.floor(Math.log10(raw)), n = raw / mag;
  const step = Math.max(minStep, (n >= 5 ? 10 : n >= 2 ? 5 : n >= 1 ? 2 : 1) * mag);
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

function extent(vals: number[], pad: number, floor?: number, ceil?: number): [number, number] {
  const finite = vals.filter(Number.isFinite);
  let lo = finite.length ? Math.min(...finite) : 0, hi = finite.length ? Math.max(...finite) : 1;
  if (hi === lo) { lo -= 0.5 * (Math.abs(lo) || 1); hi += 0.5 * (Math.abs(hi) || 1); }
  const d = (hi - lo) * pad;
  lo -= d; hi += d;
  if (floor !== undefined) lo = Math.max(lo, floor);
  if (ceil !== undefined) hi = Math.min(hi, ceil);
  return [lo, hi];
}

export interface LineChartOptions {
  title: string;
  xLabel?: string;
  yLabel?: string;
  series: Series[];
  width?: number;
  height?: number;
  /** Clamp the y range (e.g. accuracy to [0, 1]). */
  yFloor?: number;
  yCeil?: number;
  /** Logarithmic y axis (values <= 0 are not drawn). */
  logY?: boolean;
  /** Ticks on whole x values only (epochs). */
  integerX?: boolean;
  /** Said in the middle of the frame when no series has a finite point, e.g. why the loss is missing. */
  empty?: string;
}

// Legend entries: a line sample, then the name; text width estimated from the 11 px sans-serif font.
const LEGEND_ROW = 14, SAMPLE = 18;
const textWidth = (s: string) => s.length * 6.2;

/** Legend entries laid out left to right in rows no wider than `width`: their offsets and the row count. */
function legendLayout(names: string[], width: number): { at: [number, number][]; rows: number } {
  const at: [number, number][] = [];
  let x = 0, row = 0;
  for (const n of names) {
    const w = SAMPLE + 4 + textWidth(n) + 14;
    if (x > 0 && x + w > width) { x = 0; row++; }
    at.push([x, row]);
    x += w;
  }
  return { at, rows: names.length ? row + 1 : 0 };
}

export function lineChart(o: LineChartOptions): Panel {
  const width = o.width ?? 420, height = o.height ?? 280;
  // The legend sits between the title and the frame, so that it never covers a curve or leaves the panel.
  const legend = legendLayout(o.series.map((s) => s.name), width - 58 - 12);
  const m = { l: 58, r: 12, t: 28 + legend.rows * LEGEND_ROW + (legend.rows ? 6 : 0), b: 40 };
  const pw = width - m.l - m.r, ph = height - m.t - m.b;
  const xs = o.series.flatMap((s) => s.points.map((p) => p[0]));
  const f = (v: number) => (o.logY ? (v > 0 ? Math.log10(v) : NaN) : v);
  // Bands are cut to the clamps (no accuracy above 100%, no SAD below 0), so that they stay inside the frame.
  const clamp = (v: number) => Math.min(o.yCeil ?? Infinity, Math.max(o.yFloor ?? -Infinity, v));
  const band = (s: Series, j: number, sign: 1 | -1) => clamp(s.points[j][1] + sign * s.err![j]);
  const ys = o.series.flatMap((s) => s.points.flatMap((p, j) => (s.err ? [band(s, j, -1), band(s, j, 1)] : [p[1]]))).map(f);
  const [x0, x1] = extent(xs, 0);
  const [y0, y1] = o.logY ? extent(ys, 0.05) : extent(ys, 0.05, o.yFloor, o.yCeil);
  const X = (v: number) => m.l + ((v - x0) / (x1 - x0 || 1)) * pw;
  const Y = (v: number) => m.t + ph - ((f(v) - y0) / (y1 - y0 || 1)) * ph;
  const yTicks = o.logY
    ? Array.from({ length: Math.floor(y1) - Math.ceil(y0) + 1 }, (_, i) => 10 ** (Math.ceil(y0) + i))
    : ticks(y0, y1);
  const parts: string[] = [];
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="#fff" stroke="#999"/>`);
  for (const t of yTicks) {
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${m.l - 5}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end">${fmt(t)}</text>`);
  }
  for (const t of ticks(x0, x1, 6, o.integerX ? 1 : 0)) {
    parts.push(`<line x1="${X(t).toFixed(1)}" x2="${X(t).toFixed(1)}" y1="${m.t + ph}" y2="${m.t + ph + 4}" stroke="#666"/>`);
    parts.push(`<text x="${X(t).toFixed(1)}" y="${m.t + ph + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  o.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const pts = s.points.filter((p) => Number.isFinite(f(p[1])));
    if (s.err && pts.length > 1 && !o.logY) {
      const finite = s.points.map((_, j) => j).filter((j) => Number.isFinite(band(s, j, 1)) && Number.isFinite(band(s, j, -1)));
      const up = finite.map((j) => `${X(s.points[j][0]).toFixed(1)},${Y(band(s, j, 1)).toFixed(1)}`);
      const down = finite.map((j) => `${X(s.points[j][0]).toFixed(1)},${Y(band(s, j, -1)).toFixed(1)}`).reverse();
      parts.push(`<polygon points="${[...up, ...down].join(' ')}" fill="${color}" fill-opacity="0.15" stroke="none"/>`);
    }
    const d = pts.map((p, j) => `${j ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join('');
    if (pts.length > 1) parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="5,3"' : ''}/>`);
    for (const p of pts) parts.push(`<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="2.2" fill="${color}"/>`);
  });
  o.series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const x = m.l + legend.at[i][0], y = 34 + legend.at[i][1] * LEGEND_ROW;
    parts.push(`<line x1="${x}" x2="${x + SAMPLE}" y1="${y - 4}" y2="${y - 4}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5,3"' : ''}/>`);
    parts.push(`<text x="${x + SAMPLE + 4}" y="${y}">${esc(s.name)}</text>`);
  });
  if (o.empty && !o.series.some((s) => s.points.some((p) => Number.isFinite(f(p[1])))))
    parts.push(`<text x="${m.l + pw / 2}" y="${m.t + ph / 2}" text-anchor="middle" fill="#b00">${esc(o.empty)}</text>`);
  parts.push(`<text x="${m.l + pw / 2}" y="18" text-anchor="middle" font-weight="bold">${esc(o.title)}</text>`);
  if (o.xLabel) parts.push(`<text x="${m.l + pw / 2}" y="${height - 6}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  if (o.yLabel) parts.push(`<text transform="translate(14 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  return { body: parts.join('\n'), width, height };
}

export interface BarGroup {
  label: string;
  bars: { name: string; value: number; err?: number }[];
}

/** Grouped bars (one group per label, one bar per name, same colour per name across groups) with error bars. */
export function barChart(o: { title: string; yLabel?: string; groups: BarGroup[]; width?: number; height?: number; yFloor?: number; yCeil?: number }): Panel {
  const names = [...new Set(o.groups.flatMap((g) => g.bars.map((b) => b.name)))];
  const width = o.width ?? Math.max(420, 80 + o.groups.length * (names.length * 16 + 24)), height = o.height ?? 300;
  const m = { l: 58, r: 130, t: 28, b: 40 };
  const pw = width - m.l - m.r, ph = height - m.t - m.b;
  const vals = o.groups.flatMap((g) => g.bars.flatMap((b) => [b.value - (b.err ?? 0), b.value + (b.err ?? 0)]));
  const [y0, y1] = extent(vals, 0.08, o.yFloor, o.yCeil);
  const Y = (v: number) => m.t + ph - ((Math.max(y0, Math.min(y1, v)) - y0) / (y1 - y0 || 1)) * ph;
  const gw = pw / Math.max(1, o.groups.length), bw = Math.min(18, (gw - 12) / Math.max(1, names.length));
  const parts: string[] = [`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="#fff" stroke="#999"/>`];
  for (const t of ticks(y0, y1)) {
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${m.l - 5}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end">${fmt(t)}</text>`);
  }
  o.groups.forEach((g, gi) => {
    const gx = m.l + gi * gw + (gw - bw * g.bars.length) / 2;
    for (const [j, b] of g.bars.entries()) {
      const k = names.indexOf(b.name), x = gx + j * bw, color = PALETTE[k % PALETTE.length];
      parts.push(`<rect x="${x.toFixed(1)}" y="${Y(b.value).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(m.t + ph - Y(b.value)).toFixed(1)}" fill="${color}"/>`);
      if (b.err) {
        const cx = (x + (bw - 2) / 2).toFixed(1);
        parts.push(`<line x1="${cx}" x2="${cx}" y1="${Y(b.value - b.err).toFixed(1)}" y2="${Y(b.value + b.err).toFixed(1)}" stroke="#000"/>`);
      }
    }
    parts.push(`<text x="${(m.l + gi * gw + gw / 2).toFixed(1)}" y="${m.t + ph + 16}" text-anchor="middle">${esc(g.label)}</text>`);
  });
  names.forEach((n, i) => {
    const y = m.t + 10 + i * 15;
    parts.push(`<rect x="${m.l + pw + 10}" y="${y - 9}" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/>`);
    parts.push(`<text x="${m.l + pw + 24}" y="${y}">${esc(n)}</text>`);
  });
  parts.push(`<text x="${m.l + pw / 2}" y="${m.t - 10}" text-anchor="middle" font-weight="bold">${esc(o.title)}</text>`);
  if (o.yLabel) parts.push(`<text transform="translate(14 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  return { body: parts.join('\n'), width, height };
}

/** Panels laid out in rows of `columns`, as one SVG document. */
export function figure(panels: Panel[], columns = 3, title?: string): string {
  const rows: Panel[][] = [];
  for (let i = 0; i < panels.length; i += columns) rows.push(panels.slice(i, i + columns));
  const top = title ? 26 : 0;
  const width = Math.max(...rows.map((r) => r.reduce((a, p) => a + p.width, 0)));
  const heights = rows.map((r) => Math.max(...r.map((p) => p.height)));
  const height = top + heights.reduce((a, b) => a + b, 0);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fafafa"/>`,
  ];
  if (title) out.push(`<text x="${width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`);
  let y = top;
  rows.forEach((r, ri) => {
    let x = 0;
    for (const p of r) {
      out.push(`<g transform="translate(${x} ${y})">\n${p.body}\n</g>`);
      x += p.width;
    }
    y += heights[ri];
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** A run's values per epoch as chart points, and the chart options every per-epoch panel shares. */
function perEpoch(history: EpochRecord[]) {
  const at = (f: (r: EpochRecord) => number | null | undefined): [number, number][] =>
    history.map((r) => [r.epoch, f(r) ?? NaN] as [number, number]);
  const nan = history.find((r) => !Number.isFinite(r.trainLoss));
  const common = { xLabel: 'epoch', integerX: true, empty: nan ? `loss is ${nan.trainLoss} from epoch ${nan.epoch}: the run diverged` : 'no epochs' };
  return { at, common };
}

/** Loss, accuracy and SAD of one run, per epoch. */
export function trainingPlot(history: EpochRecord[], title?: string): string {
  const { at, common } = perEpoch(history);
  return figure([
    lineChart({ ...common, title: 'Loss', series: [{ name: 'train', points: at((r) => r.trainLoss) }, { name: 'test', points: at((r) => r.testLoss), dashed: true }] }),
    lineChart({ ...common, title: 'Accuracy', yCeil: 1, series: [{ name: 'train', points: at((r) => r.trainAccuracy) }, { name: 'test', points: at((r) => r.testAccuracy), dashed: true }] }),
    lineChart({ ...common, title: 'SAD (fraction of mask positions)', yFloor: 0, series: [{ name: 'vs previous epoch', points: at((r) => r.sad?.fraction) }, { name: 'vs first sparse mask', points: at((r) => r.sadCumulative?.fraction), dashed: true }] }),
  ], 3, title);
}

/** A language model's run per epoch: loss, bits per character (loss / ln 2), SAD per layer kind. */
export function lmTrainingPlot(history: EpochRecord[], title?: string): string {
  const { at, common } = perEpoch(history);
  const kinds = [...new Set(history.flatMap((r) => (r.sadKinds ?? []).map((k) => k.kind)))];
  const sadOf = (kind: string, which: 'epoch' | 'cumulative') => at((r) => r.sadKinds?.find((k) => k.kind === kind)?.[which]?.fraction);
  return figure([
    lineChart({ ...common, title: 'Loss', series: [{ name: 'train', points: at((r) => r.trainLoss) }, { name: 'validation', points: at((r) => r.testLoss), dashed: true }] }),
    lineChart({ ...common, title: 'Bits per character', series: [{ name: 'train', points: at((r) => r.trainLoss / Math.LN2) }, { name: 'validation', points: at((r) => r.testLoss / Math.LN2), dashed: true }] }),
    lineChart({ ...common, title: 'SAD per layer kind', yFloor: 0, series: kinds.flatMap((k, i) => [
      { name: `${k} vs previous epoch`, points: sadOf(k, 'epoch'), color: PALETTE[i] },
      { name: `${k} vs first sparse`, points: sadOf(k, 'cumulative'), dashed: true, color: PALETTE[i] },
    ]) }),
  ], 3, title);
}
