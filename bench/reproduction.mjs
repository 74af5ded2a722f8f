// Figures and tables of bench/results/reproduction.md from the runs of the two `nmsparse compare` grids
// (bench/results/repro-mlp/runs.jsonl, bench/results/repro-cnn/runs.jsonl). Needs the compiled library:
//   npm run build:ts && node bench/reproduction.mjs        (NMS_DIST=<dir> to use another build of lib/)
// Writes bench/results/reproduction-accuracy.svg and reproduction-sad.svg; prints the Markdown tables.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = process.env.NMS_DIST ? path.resolve(process.env.NMS_DIST) : path.join(here, '..', 'dist');
const { barChart, lineChart, figure } = await import(pathToFileURL(path.join(dist, 'train', 'plot.js')).href);
const results = path.join(here, 'results');

// Grids: a label and the directory `nmsparse compare --out` wrote.
const GRIDS = [
  ['MLP', 'repro-mlp'],
  ['CNN', 'repro-cnn-8ep'],
  ['CNN, 3 epochs', 'repro-cnn'],
];
const MODELS = GRIDS.map(([label]) => label);
const PATTERNS = ['2:4', '4:8', '1:4', '2:8', '1:8'];
const RECIPES = ['dense', 'asp', 'ste', 'srste', 'mask-decay', 'structure-decay'];
const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;
const std = (v) => (v.length < 2 ? 0 : Math.sqrt(v.reduce((a, b) => a + (b - mean(v)) ** 2, 0) / (v.length - 1)));

const runs = {};
for (const [m, dir] of GRIDS) {
  const f = path.join(results, dir, 'runs.jsonl');
  runs[m] = existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
}
const pick = (m, recipe, p) => runs[m].filter((r) => r.recipe === recipe && (recipe === 'dense' || r.pattern === p));
const acc = (rs) => rs.map((r) => 100 * r.testAccuracy);

// ---- accuracy table and bars
const out = [];
for (const m of MODELS) {
  if (!runs[m].length) continue;
  out.push(`### ${m}: test accuracy % (mean ± std over seeds; n = seeds that ran)`, '');
  out.push(`| recipe | ${PATTERNS.join(' | ')} |`, `|---|${PATTERNS.map(() => '---').join('|')}|`);
  for (const recipe of RECIPES) {
    const cells = PATTERNS.map((p) => {
      const rs = pick(m, recipe, p);
      return rs.length ? `${mean(acc(rs)).toFixed(2)} ± ${std(acc(rs)).toFixed(2)}${rs.length < 3 ? ` (n=${rs.length})` : ''}` : '—';
    });
    out.push(`| ${recipe} | ${cells.join(' | ')} |`);
  }
  out.push('', `### ${m}: final SAD, last epoch vs the one before (fraction of mask positions ×10⁻³) / vs the first sparse mask`, '');
  out.push(`| recipe | ${PATTERNS.join(' | ')} |`, `|---|${PATTERNS.map(() => '---').join('|')}|`);
  for (const recipe of RECIPES) {
    const cells = PATTERNS.map((p) => {
      const rs = pick(m, recipe, p).filter((r) => r.pattern === p);
      if (!rs.length) return '—';
      const e = rs.map((r) => 1000 * (r.sad ?? NaN)), c = rs.map((r) => r.sadCumulative ?? NaN);
      return `${mean(e).toFixed(2)} / ${mean(c).toFixed(3)}`;
    });
    out.push(`| ${recipe} | ${cells.join(' | ')} |`);
  }
  out.push('');
}

// ---- claims, mechanically: SR-STE vs STE accuracy and SAD; best recipe per pattern; 2:4 vs dense
for (const m of MODELS) {
  if (!runs[m].length) continue;
  out.push(`### ${m}: checks`, '');
  const dense = acc(pick(m, 'dense'));
  for (const p of PATTERNS) {
    const s = pick(m, 'srste', p), t = pick(m, 'ste', p);
    if (!s.length || !t.length) continue;
    const dAcc = mean(acc(s)) - mean(acc(t));
    const se = Math.sqrt(std(acc(s)) ** 2 / s.length + std(acc(t)) ** 2 / t.length);
    const sadS = mean(s.map((r) => r.sad)), sadT = mean(t.map((r) => r.sad));
    const epochs = Math.min(...[...s, ...t].map((r) => r.history.length));
    const lowerEvery = Array.from({ length: epochs - 1 }, (_, e) => e + 1).every(
      (e) => mean(s.map((r) => r.history[e].sad.fraction)) < mean(t.map((r) => r.history[e].sad.fraction)),
    );
    const best = RECIPES.filter((r) => r !== 'dense')
      .map((r) => [r, pick(m, r, p)])
      .filter(([, rs]) => rs.length)
      .sort((a, b) => mean(acc(b[1])) - mean(acc(a[1])));
    out.push(
      `- ${p}: SR-STE − STE accuracy ${dAcc >= 0 ? '+' : ''}${dAcc.toFixed(2)} pp (± ${se.toFixed(2)} s.e.); ` +
        `last-epoch SAD SR-STE ${(1000 * sadS).toFixed(2)}e-3 vs STE ${(1000 * sadT).toFixed(2)}e-3; SR-STE's per-epoch SAD lower at every epoch after the first: ${lowerEvery ? 'yes' : 'no'}; ` +
        `best recipe ${best[0][0]} (${mean(acc(best[0][1])).toFixed(2)}), dense ${mean(dense).toFixed(2)} ± ${std(dense).toFixed(2)}`,
    );
  }
  out.push('');
}
process.stdout.write(out.join('\n') + '\n');

// ---- figures
const FIGURES = MODELS.slice(0, 2); // the 3-epoch CNN grid is in the tables only
// A y axis for the bulk of the runs; a mean below it (a collapsed seed) is drawn clipped and named in the title.
const FLOOR = 95;
const bars = FIGURES.filter((m) => runs[m].length).map((m) => {
  const low = RECIPES.flatMap((r) => PATTERNS.map((p) => [r, p, pick(m, r, p)]))
    .filter(([, , rs]) => rs.length && mean(acc(rs)) < FLOOR)
    .map(([r, p, rs]) => `${r} ${p}: mean ${mean(acc(rs)).toFixed(1)}, clipped`);
  return barChart({
    title: `${m}: test accuracy (mean ± std over seeds)${low.length ? ` — ${low.join('; ')}` : ''}`, yLabel: 'test accuracy %', yFloor: FLOOR,
    groups: PATTERNS.map((p) => ({
      label: p,
      bars: RECIPES.map((r) => ({ name: r, rs: pick(m, r, p) })).filter((b) => b.rs.length)
        .map((b) => ({ name: b.name, value: mean(acc(b.rs)), err: std(acc(b.rs)) })),
    })),
    width: 760, yCeil: 100,
  });
});
writeFileSync(path.join(results, 'reproduction-accuracy.svg'), figure(bars, 1, 'MNIST, 8,000 training digits: recipes × N:M patterns'));

const curves = (rs, f) => {
  const epochs = Math.min(...rs.map((r) => r.history.length));
  const pts = [], err = [];
  for (let e = 0; e < epochs; e++) {
    const v = rs.map((r) => f(r.history[e]));
    pts.push([e + 1, mean(v)]);
    err.push(std(v));
  }
  return { points: pts, err };
};
const sadPanels = [];
for (const m of FIGURES)
  for (const p of PATTERNS) {
    const series = [['ste', '#d62728'], ['srste', '#1f77b4']]
      .map(([r, color]) => ({ r, color, rs: pick(m, r, p) }))
      .filter((x) => x.rs.length)
      .map((x) => ({ name: x.r === 'ste' ? 'STE' : 'SR-STE', color: x.color, ...curves(x.rs, (h) => h.sad.fraction) }));
    if (series.length) sadPanels.push(lineChart({ title: `${m} ${p}: SAD vs previous epoch`, xLabel: 'epoch', logY: true, series, width: 300, height: 230 }));
  }
writeFileSync(path.join(results, 'reproduction-sad.svg'), figure(sadPanels, 5, 'SAD per epoch (fraction of mask positions changed since the previous epoch, log scale; mean over seeds), STE vs SR-STE'));
process.stderr.write('wrote bench/results/reproduction-accuracy.svg and reproduction-sad.svg\n');
