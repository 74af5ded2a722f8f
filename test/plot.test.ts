// The hand-written SVG charts: legends clear of the frame's contents, whole-epoch ticks, bands inside the frame,
// and an empty panel that says why.
import { describe, expect, it } from 'vitest';
import { lineChart, trainingPlot, type Series } from '../lib/train/plot.js';
import type { EpochRecord } from '../lib/train/trainer.js';

const num = (re: RegExp, s: string) => [...s.matchAll(re)].map((m) => Number(m[1]));
/** The plot frame: the first rect of a panel. */
function frame(body: string) {
  const [x, y, w, h] = /<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"/.exec(body)!.slice(1).map(Number);
  return { x, y, w, h };
}

describe('lineChart', () => {
  const series: Series[] = [
    { name: 'a rather long recipe name', points: [[1, 0.2], [2, 0.9], [3, 0.99]], err: [0.05, 0.2, 0.3] },
    { name: 'srste', points: [[1, 0.01], [2, 0.5], [3, 0.7]], err: [0.1, 0.1, 0.1] },
    { name: 'ste', points: [[1, 0.3], [2, 0.6], [3, 0.8]] },
  ];
  const p = lineChart({ title: 't', xLabel: 'epoch', integerX: true, yFloor: 0, yCeil: 1, series, width: 300 });
  const f = frame(p.body);

  it('puts the legend above the frame and inside the panel', () => {
    const legendText = [...p.body.matchAll(/<text x="([\d.]+)" y="([\d.]+)">([^<]*)<\/text>/g)].filter((m) => series.some((s) => s.name === m[3]));
    expect(legendText).toHaveLength(3);
    for (const [, x, y, name] of legendText) {
      expect(Number(y)).toBeLessThan(f.y);
      expect(Number(x) + name.length * 6.2).toBeLessThanOrEqual(p.width);
    }
  });

  it('ticks epochs at whole numbers only', () => {
    const xTicks = [...p.body.matchAll(/<text x="[\d.]+" y="([\d.]+)" text-anchor="middle">([^<]*)<\/text>/g)]
      .filter((m) => Number(m[1]) > f.y + f.h && m[2] !== 'epoch').map((m) => Number(m[2]));
    expect(xTicks).toEqual([1, 2, 3]);
    const one = lineChart({ title: 't', integerX: true, series: [{ name: 'x', points: [[1, 0.5]] }] });
    expect(one.body).toContain('text-anchor="middle">1</text>');
    expect(one.body).not.toMatch(/text-anchor="middle">\d+\.\d+<\/text>/);  // an x tick (y ticks are end-anchored)
  });

  it('keeps ±std bands inside the frame (cut at the clamps)', () => {
    const ys = [...p.body.matchAll(/<polygon points="([^"]+)"/g)].flatMap((m) => m[1].split(' ').map((xy) => Number(xy.split(',')[1])));
    expect(ys.length).toBeGreaterThan(0);
    for (const y of ys) {
      expect(y).toBeGreaterThanOrEqual(f.y - 0.05);
      expect(y).toBeLessThanOrEqual(f.y + f.h + 0.05);
    }
  });
});

describe('trainingPlot', () => {
  it('an empty panel says why: the loss is NaN', () => {
    const rec = { epoch: 1, trainLoss: NaN, testLoss: NaN, trainAccuracy: 0.1, testAccuracy: 0.1, sad: null, sadCumulative: null } as unknown as EpochRecord;
    expect(trainingPlot([rec])).toContain('loss is NaN from epoch 1: the run diverged');
    expect(num(/y="([\d.]+)"/g, trainingPlot([rec])).every(Number.isFinite)).toBe(true);
  });
});
