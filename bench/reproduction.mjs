// Figures and tables of bench/results/reproduction.md from the runs of the `nmsparse compare` grids
// (bench/results/repro-mlp/, repro-cnn-8ep/, repro-cnn/ and the Transformer's repro-transformer/ with its AQT
// structure-decay runs in repro-transformer/aqt/). Needs the compiled library:
//   npm run build:ts && node bench/reproduction.mjs        (NMS_DIST=<dir> to use another build of lib/)
// Writes bench/results/reproduction-accuracy.svg, reproduction-sad.svg and reproduction-transformer.svg; prints
// the Markdown tables.
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

// ---- the Transformer grid: validation bits per character (lower is better), SAD per layer kind, FLOPs
const readRuns = (f) => (existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []);
const AQT = 'structure-decay (aqt)';
const LM_RECIPES = ['dense', 'asp', 'ste', 'srste', 'mask-decay', 'structure-decay', AQT];
const bpc = (rs) => rs.map((r) => r.bitsPerChar);
const pmx = (v, d = 4) => `${mean(v).toFixed(d)} ± ${std(v).toFixed(d)}${v.length < 3 ? ` (n=${v.length})` : ''}`;
// One Transformer grid (DIR/runs.jsonl and its AQT structure-decay runs in DIR/aqt/): tables, checks, figures.
function lmGrid(label, dir, LM_PATTERNS, figures) {
  const lmRuns = [
    ...readRuns(path.join(results, dir, 'runs.jsonl')),
    ...readRuns(path.join(results, dir, 'aqt', 'runs.jsonl')).map((r) => ({ ...r, recipe: AQT })),
  ];
  if (!lmRuns.length) return;
  const lmPick = (recipe, p) => lmRuns.filter((r) => r.recipe === recipe && (recipe === 'dense' || r.pattern === p));
  const o = [];
  const grid = (title, cell) => {
    o.push(title, '', `| recipe | ${LM_PATTERNS.join(' | ')} |`, `|---|${LM_PATTERNS.map(() => '---').join('|')}|`);
    for (const recipe of LM_RECIPES) {
      const cells = LM_PATTERNS.map((p) => {
        const rs = lmPick(recipe, p);
        return rs.length ? cell(rs, recipe) : '—';
      });
      if (cells.some((c) => c !== '—')) o.push(`| ${recipe} | ${cells.join(' | ')} |`);
    }
    o.push('');
  };
  grid(`### ${label}: validation bits per character (mean ± std over seeds; lower is better)`, (rs) => pmx(bpc(rs)));
  grid(`### ${label}: validation loss (nats per character, mean ± std)`, (rs) => pmx(rs.map((r) => r.testLoss)));
  grid(`### ${label}: final SAD — last epoch vs the one before (×10⁻³) / end vs the first sparse mask (attention, MLP)`, (rs, recipe) => {
    if (recipe === 'dense') return '—';
    const kind = (k) => mean(rs.map((r) => r.sadKinds.find((x) => x.kind === k)?.sadCumulative ?? NaN)).toFixed(3);
    return `${(1000 * mean(rs.map((r) => r.sad ?? NaN))).toFixed(2)} / ${mean(rs.map((r) => r.sadCumulative ?? NaN)).toFixed(3)} (${kind('attention')}, ${kind('mlp')})`;
  });
  grid(`### ${label}: training FLOPs (GFLOP, and relative to dense training)`, (rs) => {
    const f = mean(rs.map((r) => r.flopsTotal));
    return `${(f / 1e9).toFixed(0)} (${mean(rs.map((r) => r.flopsTotal / r.denseFlopsTotal)).toFixed(2)}×)`;
  });
  o.push(`### ${label}: checks`, '');
  const dense = bpc(lmPick('dense'));
  const se = (a, b) => Math.sqrt(std(a) ** 2 / a.length + std(b) ** 2 / b.length);
  const kindSad = (rs, k) => (1000 * mean(rs.map((r) => r.sadKinds.find((x) => x.kind === k).sad))).toFixed(2);
  for (const p of LM_PATTERNS) {
    const s = lmPick('srste', p), t = lmPick('ste', p);
    if (!s.length || !t.length) continue;
    const d = mean(bpc(s)) - mean(bpc(t));
    const epochs = Math.min(...[...s, ...t].map((r) => r.history.length));
    const lowerEvery = Array.from({ length: epochs - 1 }, (_, e) => e + 1).every(
      (e) => mean(s.map((r) => r.history[e].sad.fraction)) < mean(t.map((r) => r.history[e].sad.fraction)),
    );
    const ranked = LM_RECIPES.filter((r) => r !== 'dense').map((r) => [r, lmPick(r, p)]).filter(([, rs]) => rs.length)
      .sort((a, b) => mean(bpc(a[1])) - mean(bpc(b[1])));
    const decay = ['mask-decay', 'structure-decay', AQT].map((r) => [r, lmPick(r, p)]).filter(([, rs]) => rs.length)
      .map(([r, rs]) => `${r} ${mean(bpc(rs)) - mean(bpc(s)) >= 0 ? '+' : ''}${(mean(bpc(rs)) - mean(bpc(s))).toFixed(4)} (± ${se(bpc(rs), bpc(s)).toFixed(4)})`);
    o.push(
      `- ${p}: SR-STE − STE ${d >= 0 ? '+' : ''}${d.toFixed(4)} bits/char (± ${se(bpc(s), bpc(t)).toFixed(4)} s.e.; negative = SR-STE better); ` +
        `last-epoch SAD SR-STE ${(1000 * mean(s.map((r) => r.sad))).toFixed(2)}e-3 vs STE ${(1000 * mean(t.map((r) => r.sad))).toFixed(2)}e-3 ` +
        `(${['attention', 'mlp'].map((k) => `${k} ${kindSad(s, k)} vs ${kindSad(t, k)}`).join(', ')}), lower at every epoch after the first: ${lowerEvery ? 'yes' : 'no'}; ` +
        `decay recipes − SR-STE: ${decay.join(', ')}; best ${ranked[0][0]} ${mean(bpc(ranked[0][1])).toFixed(4)}, dense ${pmx(dense)}`,
    );
  }
  o.push('');
  process.stdout.write(o.join('\n') + '\n');
  if (!figures) return;

  const lmBars = barChart({
    title: 'Transformer: validation bits per character (mean ± std over seeds; lower is better)', yLabel: 'bits / char',
    groups: [
      { label: 'dense', bars: [{ name: 'dense', value: mean(dense), err: std(dense) }] },
      ...LM_PATTERNS.map((p) => ({
        label: p,
        bars: LM_RECIPES.filter((r) => r !== 'dense').map((r) => ({ name: r, rs: lmPick(r, p) })).filter((b) => b.rs.length)
          .map((b) => ({ name: b.name, value: mean(bpc(b.rs)), err: std(bpc(b.rs)) })),
      })),
    ],
    width: 760, yFloor: Math.floor(10 * Math.min(...lmRuns.map((r) => r.bitsPerChar)) - 1) / 10,
  });
  const lmSad = LM_PATTERNS.map((p) => lineChart({
    title: `Transformer ${p}: SAD vs previous epoch`, xLabel: 'epoch', logY: true, width: 300, height: 230,
    series: [['ste', 'STE', '#d62728'], ['srste', 'SR-STE', '#1f77b4']].map(([r, name, color]) => ({ name, color, rs: lmPick(r, p) }))
      .filter((x) => x.rs.length).map((x) => ({ name: x.name, color: x.color, ...curves(x.rs, (h) => h.sad.fraction) })),
  }));
  writeFileSync(path.join(results, 'reproduction-transformer.svg'), figure([lmBars], 1, 'Character GPT on the Brown corpus: recipes × N:M patterns'));
  writeFileSync(path.join(results, 'reproduction-transformer-sad.svg'), figure(lmSad, 3, 'Transformer: SAD per epoch (log scale; mean over seeds), STE vs SR-STE'));
}
lmGrid('Transformer', 'repro-transformer', ['2:4', '1:4', '1:8'], true);
lmGrid('Transformer, 1:8 at 800 steps', 'repro-transformer-1to8-800', ['1:8'], false);
process.stderr.write('wrote bench/results/reproduction-accuracy.svg, reproduction-sad.svg, reproduction-transformer.svg and reproduction-transformer-sad.svg\n');
