/**
 * Training ops (native/cpu/elementwise.{h,cc}): typed wrappers that validate their tensors, send tensors that
 * live on another device to that device's op of the same name (lib/device.ts deviceOp), and run the CPU kernel
 * otherwise. float32 tensors (cast also float16/bfloat16); class labels and pooling indices are Int32Arrays; masks are
 * uint8 tensors.
 * Images are NHWC ([batch, height, width, channels]).
 */
import { native, type NativeWindow } from '../native.js';
import { fail } from '../errors.js';
import { deviceOp } from '../device.js';
import { checkOut, checkTensor, outputFor, Tensor, zeros, type Shape } from '../tensor.js';
import { CHECKED, SparseTensor, compress } from '../compress.js';
import { nmView } from '../mask.js';
import type { Pattern } from '../pattern.js';
import { dtypeCode, type DType } from '../dtype.js';

function f32(t: unknown, arg: string): Tensor {
  const x = checkTensor(t, arg);
  if (x.dtype !== 'float32') fail('E_DTYPE', arg, x, 'a float32 tensor');
  return x;
}

const sameShape = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

function like(t: Tensor, ref: Tensor, arg: string, refArg: string): Tensor {
  if (!sameShape(t.shape, ref.shape)) fail('E_SHAPE', arg, t, `a tensor of the shape of ${refArg}, [${ref.shape.join(', ')}]`);
  if (t.device !== ref.device) fail('E_DEVICE', arg, t, `a tensor on '${ref.device}' like ${refArg}`);
  return t;
}

const fs = (t: Tensor): Float32Array => t.storage() as Float32Array;
const out32 = (out: Tensor | undefined, shape: Shape, arg = 'options.out'): Tensor =>
  outputFor(checkOut(out, shape, 'float32', 'cpu', arg), shape, 'float32');

function rowsCols(t: Tensor, arg: string): [number, number] {
  if (t.rank < 1) fail('E_SHAPE', arg, t, 'a tensor of rank >= 1');
  const cols = t.shape[t.rank - 1];
  return [cols === 0 ? 0 : t.size / cols, cols];
}

// ---------------------------------------------------------------- cast

/**
 * x converted to `dtype` (float32, float16 or bfloat16; round to nearest even), into opts.out when given: the casts
 * around a product under mixed precision (lib/nn/amp.ts). One kernel on 'cuda'.
 */
export function cast(x: Tensor, dtype: DType, opts: { out?: Tensor } = {}): Tensor {
  const t = checkTensor(x, 'x');
  for (const [d, arg] of [[t.dtype, 'x'], [dtype, 'dtype']] as const)
    if (d !== 'float32' && d !== 'float16' && d !== 'bfloat16') fail('E_DTYPE', arg, arg === 'x' ? t : d, 'float32, float16 or bfloat16');
  const out = checkOut(opts.out, t.shape, dtype, t.device);
  if (out && (t.device === 'cpu' ? out.storage().buffer === t.storage().buffer : out.deviceStorage() === t.deviceStorage()))
    fail('E_VALUE', 'options.out', out, 'a tensor other than x');
  if (t.device !== 'cpu') return deviceOp(t.device, 'cast')(t, dtype, { out });
  const o = outputFor(out, t.shape, dtype);
  native.convert(t.storage(), t.dtypeCode, o.storage(), dtypeCode(dtype), t.size);
  return o;
}

// ---------------------------------------------------------------- bias

/** y[..., c] += b[c], in place. */
export function biasAdd(y: Tensor, b: Tensor): Tensor {
  const yt = f32(y, 'y'), bt = f32(b, 'bias');
  const [rows, cols] = rowsCols(yt, 'y');
  if (bt.rank !== 1 || bt.shape[0] !== cols) fail('E_SHAPE', 'bias', bt, `a bias of shape [${cols}]`);
  if (yt.device !== 'cpu') return deviceOp(yt.device, 'biasAdd')(yt, bt);
  native.biasAdd(fs(yt), fs(bt), rows, cols);
  return yt;
}

/** db[c] = Σ over every other index of dy[..., c]. */
export function biasGrad(dy: Tensor, opts: { out?: Tensor } = {}): Tensor {
  const d = f32(dy, 'dy');
  const [rows, cols] = rowsCols(d, 'dy');
  if (d.device !== 'cpu') return deviceOp(d.device, 'biasGrad')(d, opts);
  const out = out32(opts.out, [cols]);
  native.biasGrad(fs(d), rows, cols, fs(out));
  return out;
}

// ---------------------------------------------------------------- sums and embeddings

/** a + b (the residual connections). `out` may be a or b. */
export function add(a: Tensor, b: Tensor, opts: { out?: Tensor } = {}): Tensor {
  const at = f32(a, 'a'), bt = like(f32(b, 'b'), at, 'b', 'a');
  if (at.device !== 'cpu') return deviceOp(at.device, 'add')(at, bt, opts);
  const out = out32(opts.out, at.shape);
  native.add(fs(at), fs(bt), fs(out), at.size);
  return out;
}

function checkTable(table: unknown, ids: Tensor, arg: string): Tensor {
  const t = f32(table, arg);
  if (t.rank !== 2) fail('E_SHAPE', arg, t, 'a table [vocab, dim]');
  if (t.device !== ids.device) fail('E_DEVICE', arg, t, `a tensor on '${ids.device}' like ids`);
  return t;
}

/**
 * Rows of an embedding table: out[..., :] = table[ids[...], :], ids float32 integers in [0, vocab) (the token
 * batches the trainer moves are float32); shape [...ids.shape, dim]. With `accumulate`, added to `out`'s contents.
 */
export function embeddingForward(ids: Tensor, table: Tensor, opts: { out?: Tensor; accumulate?: boolean } = {}): Tensor {
  const it = f32(ids, 'ids'), tt = checkTable(table, it, 'table');
  const [vocab, dim] = tt.shape;
  if (opts.accumulate && !opts.out) fail('E_VALUE', 'options.out', opts.out, 'the tensor to accumulate into');
  if (it.device !== 'cpu') return deviceOp(it.device, 'embeddingForward')(it, tt, opts);
  const out = out32(opts.out, [...it.shape, dim]);
  native.embeddingForward(fs(it), fs(tt), fs(out), it.size, vocab, dim, opts.accumulate ?? false);
  return out;
}

/** The table's gradient: dtable[v] = Σ over the positions holding id v of dy (added to `out` with accumulate). */
export function embeddingBackward(dy: Tensor, ids: Tensor, vocab: number, opts: { out?: Tensor; accumulate?: boolean } = {}): Tensor {
  const d = f32(dy, 'dy'), it = f32(ids, 'ids');
  if (!Number.isSafeInteger(vocab) || vocab < 1) fail('E_VALUE', 'vocab', vocab, 'an integer >= 1');
  const dim = d.shape[d.rank - 1];
  if (d.rank !== it.rank + 1 || !it.shape.every((n, i) => n === d.shape[i])) fail('E_SHAPE', 'dy', d, `a gradient [${it.shape.join(', ')}, dim] like the output of ids`);
  if (d.device !== it.device) fail('E_DEVICE', 'ids', it, `a tensor on '${d.device}' like dy`);
  if (opts.accumulate && !opts.out) fail('E_VALUE', 'options.out', opts.out, 'the tensor to accumulate into');
  if (d.device !== 'cpu') return deviceOp(d.device, 'embeddingBackward')(d, it, vocab, opts);
  const out = out32(opts.out, [vocab, dim]);
  native.embeddingBackward(fs(d), fs(it), fs(out), it.size, vocab, dim, opts.accumulate ?? false);
  return out;
}

// ---------------------------------------------------------------- activations

/** max(x, 0). `out` may be x. */
export function reluForward(x: Tensor, opts: { out?: Tensor } = {}): Tensor {
  const t = f32(x, 'x');
  if (t.device !== 'cpu') return deviceOp(t.device, 'reluForward')(t, opts);
  const out = out32(opts.out, t.shape);
  native.reluForward(fs(t), fs(out), t.size);
  return out;
}

/** dy where the forward output y > 0, else 0. */
export function reluBackward(dy: Tensor, y: Tensor, opts: { out?: Tensor } = {}): Tensor {
  const d = f32(dy, 'dy'), yt = like(f32(y, 'y'), d, 'y', 'dy');
  if (d.device !== 'cpu') return deviceOp(d.device, 'reluBackward')(d, yt, opts);
  const out = out32(opts.out, d.shape);
  native.reluBackward(fs(d), fs(yt), fs(out), d.size);
  return out;
}

/** GELU, exact erf form x·Φ(x). */
export function geluForward(x: Tensor, opts: { out?: Tensor } = {}): Tensor {
  const t = f32(x, 'x');
  if (t.device !== 'cpu') return deviceOp(t.device, 'geluForward')(t, opts);
  const out = out32(opts.out, t.shape);
  native.geluForward(fs(t), fs(out), t.size);
  return out;
}

/** dy·(Φ(x) + x·φ(x)), from the forward input x. */
export function geluBackward(dy: Tensor, x: Tensor, opts: { out?: Tensor } = {}): Tensor {
  const d = f32(dy, 'dy'), xt = like(f32(x, 'x'), d, 'x', 'dy');
  if (d.device !== 'cpu') return deviceOp(d.device, 'geluBackward')(d, xt, opts);
  const out = out32(opts.out, d.shape);
  native.geluBackward(fs(d), fs(xt), fs(out), d.size);
  return out;
}

// ---------------------------------------------------------------- LayerNorm

export interface LayerNormSaved {
  y: Tensor;
  /** Per-row mean and 1/√(var + eps), kept for the backward pass. */
  mean: Tensor;
  rstd: Tensor;
}

function checkAffine(p: Tensor | null | undefined, cols: number, ref: Tensor, arg: string): Tensor | null {
  if (p === null || p === undefined) return null;
  const t = f32(p, arg);
  if (t.rank !== 1 || t.shape[0] !== cols) fail('E_SHAPE', arg, t, `a tensor of shape [${cols}]`);
  if (t.device !== ref.device) fail('E_DEVICE', arg, t, `a tensor on '${ref.device}'`);
  return t;
}

/** LayerNorm over the last dimension: (x − μ)/√(σ² + eps)·γ + β (biased variance). */
export function layerNormForward(
  x: Tensor, gamma: Tensor | null, beta: Tensor | null, eps = 1e-5,
  opts: { out?: Tensor; mean?: Tensor; rstd?: Tensor } = {},
): LayerNormSaved {
  const t = f32(x, 'x');
  const [rows, cols] = rowsCols(t, 'x');
  const g = checkAffine(gamma, cols, t, 'gamma'), b = checkAffine(beta, cols, t, 'beta');
  if (!(eps > 0)) fail('E_VALUE', 'eps', eps, 'a number > 0');
  if (t.device !== 'cpu') return deviceOp(t.device, 'layerNormForward')(t, g, b, eps, opts);
  const y = out32(opts.out, t.shape);
  const mean = out32(opts.mean, [rows], 'options.mean'), rstd = out32(opts.rstd, [rows], 'options.rstd');
  native.layerNormForward({ x: fs(t), gamma: g && fs(g), beta: b && fs(b), y: fs(y), mean: fs(mean), rstd: fs(rstd), rows, cols, eps });
  return { y, mean, rstd };
}

export interface LayerNormGrads {
  dx: Tensor;
  dgamma: Tensor | null;
  dbeta: Tensor | null;
}

/** Gradients of layerNormForward; dgamma/dbeta are computed when `gamma`/`withBeta` say the layer has them. */
export function layerNormBackward(
  dy: Tensor, x: Tensor, gamma: Tensor | null, mean: Tensor, rstd: Tensor, withBeta: boolean,
  opts: { out?: Tensor; dgamma?: Tensor; dbeta?: Tensor } = {},
): LayerNormGrads {
  const d = f32(dy, 'dy'), xt = like(f32(x, 'x'), d, 'x', 'dy');
  const [rows, cols] = rowsCols(d, 'dy');
  const g = checkAffine(gamma, cols, d, 'gamma');
  const m = f32(mean, 'mean'), r = f32(rstd, 'rstd');
  if (m.size !== rows || r.size !== rows) fail('E_SHAPE', 'mean/rstd', m, `tensors of ${rows} elements (one per row)`);
  if (d.device !== 'cpu') return deviceOp(d.device, 'layerNormBackward')(d, xt, g, m, r, withBeta, opts);
  const dx = out32(opts.out, d.shape);
  const dgamma = g ? out32(opts.dgamma, [cols], 'options.dgamma') : null;
  const dbeta = withBeta ? out32(opts.dbeta, [cols], 'options.dbeta') : null;
  native.layerNormBackward({
    dy: fs(d), x: fs(xt), gamma: g && fs(g), mean: fs(m), rstd: fs(r), dx: fs(dx), dgamma: dgamma && fs(dgamma),
    dbeta: dbeta && fs(dbeta), rows, cols,
  });
  return { dx, dgamma, dbeta };
}

// ---------------------------------------------------------------- softmax cross-entropy

/** The label of a row that has none (padding): PyTorch's ignore_index. */
export const IGNORE_LABEL = -1;

/** Checks the labels; returns how many rows have one (not IGNORE_LABEL). */
function checkLabels(labels: unknown, rows: number, cols: number): number {
  if (!(labels instanceof Int32Array)) fail('E_TYPE', 'labels', labels, 'an Int32Array of class indices');
  if (labels.length !== rows) fail('E_SHAPE', 'labels', labels, `${rows} labels (one per row of logits)`);
  let counted = 0;
  for (let i = 0; i < rows; i++) {
    if (labels[i] === IGNORE_LABEL) continue;
    if (!(labels[i] >= 0 && labels[i] < cols)) fail('E_VALUE', `labels[${i}]`, labels[i], `a class index in [0, ${cols}) or ${IGNORE_LABEL} (ignored)`);
    counted++;
  }
  return counted;
}

export interface XentResult {
  /** Mean loss over the labelled rows (0 when every row is ignored). */
  loss: number;
  /** Labelled rows whose argmax equals the label. */
  correct: number;
  /** Labelled rows (those whose label is not IGNORE_LABEL). */
  count: number;
  /** softmax(logits), kept for the backward pass. */
  probs: Tensor;
}

/**
 * Mean softmax cross-entropy of logits [rows, classes] against integer labels, with optional label smoothing ε.
 * Rows labelled IGNORE_LABEL (−1) count for nothing: not in the loss, the mean's denominator, `correct` or the
 * gradient (PyTorch's ignore_index).
 */
export function softmaxCrossEntropy(logits: Tensor, labels: Int32Array, opts: { labelSmoothing?: number; probs?: Tensor } = {}): XentResult {
  const z = f32(logits, 'logits');
  if (z.rank !== 2 || z.shape[0] === 0 || z.shape[1] === 0) fail('E_SHAPE', 'logits', z, 'a non-empty 2-D tensor [rows, classes]');
  const [rows, cols] = z.shape;
  checkLabels(labels, rows, cols);
  const eps = opts.labelSmoothing ?? 0;
  if (!(eps >= 0 && eps <= 1)) fail('E_VALUE', 'options.labelSmoothing', eps, 'a number in [0, 1]');
  if (z.device !== 'cpu') return deviceOp(z.device, 'softmaxCrossEntropy')(z, labels, opts);
  const probs = out32(opts.probs, z.shape, 'options.probs');
  const [sum, correct, count] = native.softmaxXentForward(fs(z), labels, fs(probs), rows, cols, eps) as [number, number, number];
  return { loss: count ? sum / count : 0, correct, count, probs };
}

/** d(mean loss)/d logits = (probs − q)/(labelled rows) (times `scale`, default 1), 0 on ignored rows. `out` may be probs. */
export function softmaxCrossEntropyBackward(probs: Tensor, labels: Int32Array, opts: { labelSmoothing?: number; scale?: number; out?: Tensor } = {}): Tensor {
  const p = f32(probs, 'probs');
  if (p.rank !== 2) fail('E_SHAPE', 'probs', p, 'a 2-D tensor [rows, classes]');
  const [rows, cols] = p.shape;
  const count = checkLabels(labels, rows, cols);
  const eps = opts.labelSmoothing ?? 0;
  if (p.device !== 'cpu') return deviceOp(p.device, 'softmaxCrossEntropyBackward')(p, labels, { ...opts, count });
  const out = out32(opts.out, p.shape);
  native.softmaxXentBackward(fs(p), labels, fs(out), rows, cols, eps, (opts.scale ?? 1) / Math.max(count, 1));
  return out;
}

// ---------------------------------------------------------------- windows over NHWC images

export interface Window2d {
  kernel: [number, number];
  stride: [number, number];
  padding: [number, number];
}

/** Output height and width of a window over an NHWC input of `shape`, with every size checked. */
export function windowOutput(shape: Shape, w: Window2d, arg = 'x'): { batch: number; h: number; w: number; c: number; oh: number; ow: number } {
  if (shape.length !== 4) fail('E_SHAPE', arg, [...shape], 'an NHWC shape [batch, height, width, channels]');
  const [batch, h, wd, c] = shape;
  const [kh, kw] = w.kernel, [sh, sw] = w.stride, [ph, pw] = w.padding;
  for (const [v, name, min] of [[kh, 'kernel', 1], [kw, 'kernel', 1], [sh, 'stride', 1], [sw, 'stride', 1], [ph, 'padding', 0], [pw, 'padding', 0]] as const)
    if (!Number.isInteger(v) || v < min) fail('E_VALUE', name, v, `an integer >= ${min}`);
  if (h + 2 * ph < kh || wd + 2 * pw < kw)
    fail('E_SHAPE', arg, [...shape], `an image of at least ${kh - 2 * ph}x${kw - 2 * pw} for a ${kh}x${kw} window with padding ${ph}x${pw}`);
  return { batch, h, w: wd, c, oh: Math.floor((h + 2 * ph - kh) / sh) + 1, ow: Math.floor((wd + 2 * pw - kw) / sw) + 1 };
}

const geom = (x: { batch: number; h: number; w: number; c: number }, w: Window2d): NativeWindow => ({
  batch: x.batch, h: x.h, w: x.w, c: x.c, kh: w.kernel[0], kw: w.kernel[1], strideH: w.stride[0], strideW: w.stride[1],
  padH: w.padding[0], padW: w.padding[1],
});

/** Patches of an NHWC image as rows: [batch·oh·ow, kh·kw·c], in (ky, kx, c) order with c fastest, zero padded. */
export function im2col(x: Tensor, w: Window2d, opts: { out?: Tensor } = {}): Tensor {
  const t = f32(x, 'x');
  const g = windowOutput(t.shape, w);
  if (t.device !== 'cpu') return deviceOp(t.device, 'im2col')(t, w, opts);
  const out = out32(opts.out, [g.batch * g.oh * g.ow, w.kernel[0] * w.kernel[1] * g.c]);
  native.im2col({ x: fs(t), cols: fs(out), ...geom(g, w) });
  return out;
}

/** The adjoint of im2col: sums each patch row back into an NHWC image of `inputShape`. */
export function col2im(cols: Tensor, inputShape: Shape, w: Window2d, opts: { out?: Tensor } = {}): Tensor {
  const c = f32(cols, 'cols');
  const g = windowOutput(inputShape, w, 'inputShape');
  const expect = [g.batch * g.oh * g.ow, w.kernel[0] * w.kernel[1] * g.c];
  if (!sameShape(c.shape, expect)) fail('E_SHAPE', 'cols', c, `patch rows of shape [${expect.join(', ')}]`);
  if (c.device !== 'cpu') return deviceOp(c.device, 'col2im')(c, inputShape, w, opts);
  const out = out32(opts.out, inputShape);
  native.col2im({ cols: fs(c), dx: fs(out), ...geom(g, w) });
  return out;
}

export interface MaxPoolSaved {
  y: Tensor;
  /** Flat input index of each output's maximum (for the backward pass). */
  argmax: Int32Array;
}

/** Max pooling over an NHWC image; positions outside the image (padding) never win. */
export function maxPoolForward(x: Tensor, w: Window2d, opts: { out?: Tensor; argmax?: Int32Array } = {}): MaxPoolSaved {
  const t = f32(x, 'x');
  const g = windowOutput(t.shape, w);
  if (2 * w.padding[0] > w.kernel[0] || 2 * w.padding[1] > w.kernel[1]) fail('E_VALUE', 'padding', w.padding, 'at most half the window');
  if (t.size >= 2 ** 31) fail('E_SHAPE', 'x', t, 'fewer than 2^31 elements');
  if (t.device !== 'cpu') return deviceOp(t.device, 'maxPoolForward')(t, w, opts);
  const shape = [g.batch, g.oh, g.ow, g.c];
  const y = out32(opts.out, shape);
  const argmax = opts.argmax ?? new Int32Array(y.size);
  if (argmax.length !== y.size) fail('E_SHAPE', 'options.argmax', argmax, `an Int32Array of ${y.size} elements`);
  native.maxPoolForward({ x: fs(t), y: fs(y), argmax, ...geom(g, w) });
  return { y, argmax };
}

/** Routes each output gradient to the input position that won the forward max. */
export function maxPoolBackward(dy: Tensor, argmax: Int32Array, inputShape: Shape, w: Window2d, opts: { out?: Tensor } = {}): Tensor {
  const d = f32(dy, 'dy');
  const g = windowOutput(inputShape, w, 'inputShape');
  const expect = [g.batch, g.oh, g.ow, g.c];
  if (!sameShape(d.shape, expect)) fail('E_SHAPE', 'dy', d, `a tensor of shape [${expect.join(', ')}]`);
  if (!(argmax instanceof Int32Array) || argmax.length !== d.size) fail('E_SHAPE', 'argmax', argmax, `an Int32Array of ${d.size} elements`);
  if (d.device !== 'cpu') return deviceOp(d.device, 'maxPoolBackward')(d, argmax, inputShape, w, opts);
  const out = out32(opts.out, inputShape);
  native.maxPoolBackward({ dy: fs(d), argmax, dx: fs(out), ...geom(g, w) });
  return out;
}

// ---------------------------------------------------------------- dropout

/**
 * Inverted dropout with a counter-based generator: element i is kept iff u(seed, offset + i) >= p and scaled by
 * 1/(1 − p). The backward pass is the same call on dy with the same (seed, offset): nothing is stored.
 */
export function dropout(x: Tensor, p: number, seed: number, offset: number, opts: { out?: Tensor } = {}): Tensor {
  const t = f32(x, 'x');
  if (!(p >= 0 && p < 1)) fail('E_VALUE', 'p', p, 'a probability in [0, 1)');
  if (!Number.isSafeInteger(seed)) fail('E_VALUE', 'seed', seed, 'an integer');
  if (!Number.isSafeInteger(offset) || offset < 0) fail('E_VALUE', 'offset', offset, 'an integer >= 0');
  if (t.device !== 'cpu') return deviceOp(t.device, 'dropout')(t, p, seed, offset, opts);
  const out = out32(opts.out, t.shape);
  native.dropout(fs(t), fs(out), t.size, p, seed, offset);
  return out;
}

// ---------------------------------------------------------------- the recipes' masked terms

function checkMask(mask: unknown, ref: Tensor): Tensor {
  const m = checkTensor(mask, 'mask');
  if (m.dtype !== 'uint8') fail('E_DTYPE', 'mask', m, 'a uint8 mask');
  return like(m, ref, 'mask', 'the weight');
}

/** x ⊙ (m + (1 − m)·α): kept elements unchanged, pruned ones scaled by α (α = 0: x ⊙ m). `out` may be x. */
export function maskedScale(x: Tensor, mask: Tensor, alpha: number, opts: { out?: Tensor } = {}): Tensor {
  const t = f32(x, 'x'), m = checkMask(mask, t);
  if (!Number.isFinite(alpha)) fail('E_VALUE', 'alpha', alpha, 'a finite number');
  if (t.device !== 'cpu') return deviceOp(t.device, 'maskedScale')(t, m, alpha, opts);
  const out = out32(opts.out, t.shape);
  native.maskedScale(fs(t), m.storage(), alpha, fs(out), t.size);
  return out;
}

/** g += λ·(1 − m) ⊙ w, in place (the SR-STE sparse-refined term). λ = 0 leaves g bit for bit unchanged. */
export function maskedAdd(g: Tensor, w: Tensor, mask: Tensor, lambda: number): Tensor {
  const gt = f32(g, 'g'), wt = like(f32(w, 'w'), gt, 'w', 'g'), m = checkMask(mask, gt);
  if (!Number.isFinite(lambda)) fail('E_VALUE', 'lambda', lambda, 'a finite number');
  if (gt.device !== 'cpu') return deviceOp(gt.device, 'maskedAdd')(gt, wt, m, lambda);
  native.maskedAdd(fs(gt), fs(wt), m.storage(), lambda, gt.size);
  return gt;
}

/**
 * A recipe's mask refresh in one pass: `mask` = the N:M mask of w (the selection of nm.mask: top-N |w| of each
 * group of M along the last dimension, ties to the lower index, NaN largest) and `out` = w ⊙ (m + (1 − m)·α).
 * Returns both (into `opts.mask` / `opts.out` when given).
 */
export function nmMaskScale(w: Tensor, pattern: Pattern, alpha: number, opts: { mask?: Tensor; out?: Tensor } = {}): { mask: Tensor; out: Tensor } {
  const t = f32(w, 'w');
  const { rows, cols } = nmView(t, pattern, 'w');
  if (!Number.isFinite(alpha)) fail('E_VALUE', 'alpha', alpha, 'a finite number');
  if (t.device !== 'cpu') return deviceOp(t.device, 'nmMaskScale')(t, pattern, alpha, opts);
  const mask = outputFor(checkOut(opts.mask, t.shape, 'uint8', 'cpu', 'options.mask'), t.shape, 'uint8');
  const out = out32(opts.out, t.shape);
  if (out.storage() === t.storage()) fail('E_VALUE', 'options.out', out, 'a tensor other than w');
  native.nmMaskScale({ w: fs(t), rows, cols, n: pattern.n, m: pattern.m, alpha, mask: mask.storage(), eff: fs(out) });
  return { mask, out };
}

/**
 * What nmTrainPass writes besides the mask: w ⊙ mask (float32; on the CPU not with dense: false), and its compressed
 * form (values and positions) in the pass's dtype. With a 16-bit dtype also `out16`, w ⊙ mask in that dtype (the
 * 16-bit products' dense operand), and on the CPU `values32`, the float32 values the native pass writes before they
 * are rounded.
 */
export interface TrainPassBuffers {
  out: Tensor;
  sparse: SparseTensor;
  out16?: Tensor;
  values32?: Tensor;
}

/** What nmTrainPass returns; `sad` is read from the GPU when first asked for (on 'cuda' the pass does not wait). */
export interface TrainPassResult {
  mask: Tensor;
  buffers: TrainPassBuffers;
  readonly sad: number;
}

/**
 * The training step's one pass over a weight whose forward is exactly N:M: `mask` = the N:M mask of w (the
 * selection of nmMaskScale) — or, with `select: false`, the mask `opts.mask` already holds —, `out` = w ⊙ mask,
 * and `sparse`, the compressed form of w ⊙ mask that the N:M products read. Returns the mask and the buffers (made
 * when `opts.buffers` does not fit, reused otherwise) and the SAD of this selection: the entries of `opts.mask`
 * that changed (0 without `opts.mask` or without selection). On the CPU `sparse` is rewritten in place; on 'cuda'
 * (lib/cuda-train.ts) it is made anew each step, as xFormers' sparsify24 does, and the previous one disposed.
 * A given mask that does not keep exactly N per group is E_VALUE on the CPU (the buffers are then partly
 * rewritten: they are the step's scratch). With `dense: false` the CPU pass leaves `out` unwritten (for products
 * that read only `sparse`); on 'cuda' it is always written. opts.dtype (default float32): float16 or bfloat16 for
 * mixed-precision training (lib/nn/amp.ts): `sparse` and `out16` are then w ⊙ mask rounded to that dtype (`out`
 * is then always written: out16 is rounded from it).
 */
export function nmTrainPass(w: Tensor, pattern: Pattern,
  opts: { mask?: Tensor | null; buffers?: TrainPassBuffers | null; select?: boolean; dense?: boolean; dtype?: DType } = {}): TrainPassResult {
  const t = f32(w, 'w');
  const { rows, cols } = nmView(t, pattern, 'w');
  if (t.rank !== 2) fail('E_SHAPE', 'w', t, 'a [rows, cols] weight');
  const select = opts.select ?? true;
  const dtype = opts.dtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16' && dtype !== 'bfloat16') fail('E_DTYPE', 'options.dtype', dtype, 'float32, float16 or bfloat16');
  const given = opts.mask ? checkMask(opts.mask, t) : null;
  if (!select && !given) fail('E_VALUE', 'options.mask', opts.mask, 'the mask to apply when options.select is false');
  const prev = opts.buffers ?? null;
  const fits = prev !== null && prev.sparse.n === pattern.n && prev.sparse.m === pattern.m && sameShape(prev.out.shape, t.shape) &&
    prev.out.device === t.device && prev.sparse.dtype === dtype;
  if (fits && (t.device === 'cpu' ? prev.out.storage() === t.storage() : prev.out.deviceStorage() === t.deviceStorage()))
    fail('E_VALUE', 'options.buffers.out', prev.out, 'a tensor other than w');
  if (t.device !== 'cpu') return deviceOp(t.device, 'nmTrainPass')(t, pattern, { mask: given, buffers: fits ? prev : null, select, dtype });
  const mask = given ?? zeros(t.shape, { dtype: 'uint8' });
  const kept = [rows, (cols / pattern.m) * pattern.n];
  const half = dtype !== 'float32';
  const b: TrainPassBuffers = fits ? prev : {
    out: zeros(t.shape),
    // CHECKED: its positions are all zero until the nmTrainPass below writes them.
    sparse: new SparseTensor(t.shape, pattern, dtype, {
      values: zeros(kept, { dtype }),
      positions: new Uint8Array(native.nmPositionBytes(rows, cols, pattern.n, pattern.m) as number),
    }, CHECKED),
    ...(half ? { out16: zeros(t.shape, { dtype }), values32: zeros(kept) } : {}),
  };
  const values = b.values32 ?? b.sparse.values;
  const sad = native.nmTrainPass({
    w: fs(t), rows, cols, n: pattern.n, m: pattern.m, mask: mask.storage(), select, countSad: select && given !== null,
    eff: half || (opts.dense ?? true) ? fs(b.out) : null, values: fs(values), positions: b.sparse.positions,
  });
  if (half) {
    native.convert(values.storage(), values.dtypeCode, b.sparse.values.storage(), dtypeCode(dtype), values.size);
    native.convert(fs(b.out), b.out.dtypeCode, b.out16!.storage(), dtypeCode(dtype), b.out.size);
  }
  return { mask, buffers: b, sad };
}

/**
 * W̃ᵀ compressed, from a 16-bit training pass's `out16` = W̃ [rows, cols] whose mask is transposable 2:4 (2 kept per
 * row and column of every 4×4 tile): W̃ᵀ [cols, rows] is then 2:4 along its rows, and the input gradient
 * dY·W̃ = dY·(W̃ᵀ)ᵀ runs as the N:M product sparseLinear(dY, W̃ᵀ) (on 'cuda' through cuSPARSELt). A new tensor each
 * call; nothing of W̃ is pruned, as each group of W̃ᵀ holds at most 2 non-zeros (not checked here).
 */
export function nmTransposedForm(w16: Tensor): SparseTensor {
  const t = checkTensor(w16, 'w16');
  if (t.dtype !== 'float16' && t.dtype !== 'bfloat16') fail('E_DTYPE', 'w16', t, 'a float16 or bfloat16 tensor');
  if (t.rank !== 2 || t.shape[0] % 4 !== 0 || t.shape[1] % 4 !== 0) fail('E_SHAPE', 'w16', t, 'a [rows, cols] weight, both multiples of 4');
  if (t.device !== 'cpu') return deviceOp(t.device, 'nmTransposedForm')(t);
  return compress(t.transpose(), '2:4');
}
