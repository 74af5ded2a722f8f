/**
 * Layers. Shapes follow PyTorch except images, which are NHWC ([batch, height, width, channels]) so that
 * convolutions run as im2col + one GEMM with the N:M groups along input channels:
 *   Linear     weight [out, in] (groups of M along `in`), y = x·Wᵀ + b
 *   Conv2d     weight stored [out, kh, kw, in] (layout 'OHWI'; PyTorch's is [out, in, kh, kw]) so that the
 *              N:M groups — M consecutive elements of the last dimension — run along input channels at a
 *              fixed (out, kh, kw), the ASP / NHWC rule of docs/design.md §5. y = im2col(x) · W[out, kh·kw·in]ᵀ + b.
 * A Linear or Conv2d given `sparsity: {pattern, recipe}` (or made as SparseLinear / SparseConv2d) trains its
 * weight N:M sparse with that recipe; without it the layer stays dense (e.g. the classifier).
 */
import { fail } from '../errors.js';
import { parsePattern, patternString, type Pattern } from '../pattern.js';
import { checkTensor, ones, rand, zeros, type Shape, type Tensor } from '../tensor.js';
import { randomSeed } from '../random.js';
import type { SparseTensor } from '../compress.js';
import { SparseWeight, type Recipe } from '../recipes/recipe.js';
import { Module, Parameter } from './module.js';
import { HalfProducts, inputGrad, linearForward, matmulTN, nmCovers } from './linalg.js';
import { autocastPrecision } from './amp.js';
import {
  biasGrad, col2im, dropout, geluBackward, geluForward, im2col, layerNormBackward, layerNormForward,
  maxPoolBackward, maxPoolForward, reluBackward, reluForward, windowOutput, type Window2d,
} from './elementwise.js';

export interface SparsityOptions {
  pattern: Pattern | string;
  recipe: Recipe;
}

export interface LinearOptions {
  bias?: boolean;
  /** Seed of the initial weights (uniform ±1/√fan_in, as PyTorch). Default: random. */
  seed?: number;
  sparsity?: SparsityOptions;
}

function f32Input(x: unknown, arg = 'x'): Tensor {
  const t = checkTensor(x, arg);
  if (t.dtype !== 'float32') fail('E_DTYPE', arg, t, 'a float32 tensor');
  return t;
}

function positive(v: unknown, arg: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail('E_VALUE', arg, v, 'an integer >= 1');
  return v;
}

function uniformInit(shape: Shape, fanIn: number, seed: number): Tensor {
  const bound = 1 / Math.sqrt(fanIn);
  return rand(shape, { seed, low: -bound, high: bound });
}

export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly #sparse: SparseWeight | null;
  #x: Tensor | null = null;
  #w: Tensor | null = null;
  /** The compressed weight of the last forward when it was exactly N:M on the kernels (the products read it). */
  #nm: SparseTensor | null = null;
  #half: HalfProducts | null = null;
  #inShape: Shape = [];

  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: LinearOptions = {}) {
    super();
    positive(inFeatures, 'inFeatures');
    positive(outFeatures, 'outFeatures');
    const seed = opts.seed ?? randomSeed();
    this.weight = new Parameter(uniformInit([outFeatures, inFeatures], inFeatures, seed));
    this.bias = opts.bias === false ? null : new Parameter(uniformInit([outFeatures], inFeatures, seed + 0x9e3779b1), false);
    this.#sparse = opts.sparsity ? sparseWeight(this.weight, opts.sparsity, 'weight') : null;
  }

  override get sparse(): SparseWeight | null { return this.#sparse; }
  override ownParameters(): [string, Parameter][] {
    return this.bias ? [['weight', this.weight], ['bias', this.bias]] : [['weight', this.weight]];
  }
  override describe(): string {
    return `${this.constructor.name}(${this.inFeatures} → ${this.outFeatures}${sparseLabel(this.#sparse)})`;
  }

  forward(x: Tensor): Tensor {
    const t = f32Input(x);
    if (t.shape[t.rank - 1] !== this.inFeatures) fail('E_SHAPE', 'x', t, `a tensor [..., ${this.inFeatures}]`);
    this.#inShape = t.shape;
    const x2 = t.rank === 2 ? t : t.reshape([-1, this.inFeatures]);
    const half = this.#half = halfProducts(this.#half, (k, sh, l, d) => this.buffer(k, sh, l, d));
    // Products that all run from the compressed form spare the pass the dense W ⊙ m.
    const dense = !nmCovers([this.outFeatures, this.inFeatures], t.device, this.training && this.requiresInputGrad, half !== null);
    const w = this.#sparse ? this.#sparse.forwardWeight(this.training, dense) : this.weight.value;
    const rows = x2.shape[0];
    const nmw = this.#sparse?.compressed ?? null;
    if (half) half.wT = nmw && (() => this.#sparse!.transposedForm());
    const y = linearForward(x2, w, this.bias?.value ?? null, this.buffer('y', [rows, this.outFeatures], t), nmw, half, nmw && this.#sparse!.halfWeight);
    this.#x = x2;
    this.#w = w;
    this.#nm = nmw;
    this.lastForwardFlops = 2 * rows * this.inFeatures * this.outFeatures;
    return t.rank === 2 ? y : y.reshape([...t.shape.slice(0, -1), this.outFeatures]);
  }

  backward(dy: Tensor): Tensor | null {
    const x = this.saved(this.#x), w = this.#w;
    const d = f32Input(dy, 'dy').reshape([-1, this.outFeatures]);
    if (d.shape[0] !== x.shape[0]) fail('E_SHAPE', 'dy', dy, `a gradient of ${x.shape[0]} rows, like the forward output`);
    matmulTN(d, x, this.weight.grad, this.#half);
    this.#sparse?.backward();
    if (this.bias) biasGrad(d, { out: this.bias.grad });
    if (!this.requiresInputGrad) return null;
    const dx = inputGrad(d, w, this.#nm, this.buffer('dx', x.shape, x), this.#half);
    return this.#inShape.length === 2 ? dx : dx.reshape(this.#inShape as number[]);
  }
}

/** A Linear whose weight trains N:M sparse with `recipe`. */
export class SparseLinear extends Linear {
  constructor(inFeatures: number, outFeatures: number, pattern: Pattern | string, recipe: Recipe, opts: Omit<LinearOptions, 'sparsity'> = {}) {
    super(inFeatures, outFeatures, { ...opts, sparsity: { pattern, recipe } });
  }
}

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  bias?: boolean;
  seed?: number;
  /** N:M along input channels: inChannels must be a multiple of M. */
  sparsity?: SparsityOptions;
}

const pair = (v: number | [number, number], arg: string, min: number): [number, number] => {
  const p: [number, number] = typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || p.some((d) => !Number.isSafeInteger(d) || d < min))
    fail('E_VALUE', arg, v, `an integer >= ${min} or a pair of them`);
  return p;
};

export class Conv2d extends Module {
  /** [outChannels, kh, kw, inChannels] ('OHWI'). */
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly window: Window2d;
  readonly #sparse: SparseWeight | null;
  #cols: Tensor | null = null;
  #w: Tensor | null = null;
  /** The compressed weight of the last forward when it was exactly N:M on the kernels (the products read it). */
  #nm: SparseTensor | null = null;
  #half: HalfProducts | null = null;
  #inShape: Shape = [];

  constructor(readonly inChannels: number, readonly outChannels: number, kernelSize: number | [number, number], opts: Conv2dOptions = {}) {
    super();
    positive(inChannels, 'inChannels');
    positive(outChannels, 'outChannels');
    const kernel = pair(kernelSize, 'kernelSize', 1);
    this.window = { kernel, stride: pair(opts.stride ?? 1, 'stride', 1), padding: pair(opts.padding ?? 0, 'padding', 0) };
    const seed = opts.seed ?? randomSeed();
    const fanIn = inChannels * kernel[0] * kernel[1];
    this.weight = new Parameter(uniformInit([outChannels, kernel[0], kernel[1], inChannels], fanIn, seed), true, 'OHWI');
    this.bias = opts.bias === false ? null : new Parameter(uniformInit([outChannels], fanIn, seed + 0x9e3779b1), false);
    if (opts.sparsity) {
      const p = parsePattern(opts.sparsity.pattern, 'sparsity.pattern');
      if (inChannels % p.m !== 0)
        fail('E_SHAPE', 'inChannels', inChannels, `a multiple of m = ${p.m}: N:M groups of a Conv2d weight run along input channels (keep this layer dense)`);
    }
    this.#sparse = opts.sparsity ? sparseWeight(this.weight, opts.sparsity, 'weight', inChannels, inChannels * kernel[0] * kernel[1]) : null;
  }

  get patchSize(): number { return this.window.kernel[0] * this.window.kernel[1] * this.inChannels; }
  override get sparse(): SparseWeight | null { return this.#sparse; }
  override ownParameters(): [string, Parameter][] {
    return this.bias ? [['weight', this.weight], ['bias', this.bias]] : [['weight', this.weight]];
  }
  override describe(): string {
    const [kh, kw] = this.window.kernel;
    return `${this.constructor.name}(${this.inChannels} → ${this.outChannels}, ${kh}x${kw}, stride ${this.window.stride.join('x')}, pad ${this.window.padding.join('x')}${sparseLabel(this.#sparse)})`;
  }

  forward(x: Tensor): Tensor {
    const t = f32Input(x);
    if (t.rank !== 4 || t.shape[3] !== this.inChannels) fail('E_SHAPE', 'x', t, `an NHWC tensor [batch, height, width, ${this.inChannels}]`);
    const g = windowOutput(t.shape, this.window);
    const rows = g.batch * g.oh * g.ow, k = this.patchSize;
    const cols = im2col(t, this.window, { out: this.buffer('cols', [rows, k], t) });
    const half = this.#half = halfProducts(this.#half, (k, sh, l, d) => this.buffer(k, sh, l, d));
    const dense = !nmCovers([this.outChannels, k], t.device, this.training && this.requiresInputGrad, half !== null);
    const w = this.#sparse ? this.#sparse.forwardWeight(this.training, dense) : this.weight.value.reshape([this.outChannels, k]);
    const nmw = this.#sparse?.compressed ?? null;
    if (half) half.wT = nmw && (() => this.#sparse!.transposedForm());
    const y = linearForward(cols, w, this.bias?.value ?? null, this.buffer('y', [rows, this.outChannels], t), nmw, half, nmw && this.#sparse!.halfWeight);
    this.#cols = cols;
    this.#w = w;
    this.#nm = nmw;
    this.#inShape = t.shape;
    this.lastForwardFlops = 2 * rows * k * this.outChannels;
    return y.reshape([g.batch, g.oh, g.ow, this.outChannels]);
  }

  backward(dy: Tensor): Tensor | null {
    const cols = this.saved(this.#cols), w = this.#w;
    const d = f32Input(dy, 'dy');
    if (d.size !== cols.shape[0] * this.outChannels) fail('E_SHAPE', 'dy', d, 'a gradient of the shape of the forward output');
    const d2 = d.reshape([cols.shape[0], this.outChannels]);
    matmulTN(d2, cols, this.weight.grad.reshape([this.outChannels, this.patchSize]), this.#half);
    this.#sparse?.backward();
    if (this.bias) biasGrad(d2, { out: this.bias.grad });
    if (!this.requiresInputGrad) return null;
    const dcols = inputGrad(d2, w, this.#nm, this.buffer('dcols', cols.shape, cols), this.#half);
    return col2im(dcols, this.#inShape, this.window, { out: this.buffer('dx', this.#inShape, cols) });
  }
}

/** A Conv2d whose weight trains N:M sparse (groups along input channels) with `recipe`. */
export class SparseConv2d extends Conv2d {
  constructor(inChannels: number, outChannels: number, kernelSize: number | [number, number], pattern: Pattern | string, recipe: Recipe, opts: Omit<Conv2dOptions, 'sparsity'> = {}) {
    super(inChannels, outChannels, kernelSize, { ...opts, sparsity: { pattern, recipe } });
  }
}

/** The 16-bit products of a forward under autocast (the layer's previous object when the dtype is the same), or null. */
function halfProducts(prev: HalfProducts | null, buffer: HalfProducts['buffer']): HalfProducts | null {
  const p = autocastPrecision();
  if (p === 'float32') return null;
  return prev?.dtype === p ? prev : new HalfProducts(p, buffer);
}

function sparseWeight(p: Parameter, s: SparsityOptions, name: string, groupExtent?: number, cols?: number): SparseWeight {
  if (!s || typeof s !== 'object' || !s.recipe || typeof s.recipe.forwardWeight !== 'function')
    fail('E_TYPE', 'sparsity.recipe', s?.recipe, 'a Recipe (createRecipe(name))');
  return new SparseWeight(p, parsePattern(s.pattern, 'sparsity.pattern'), s.recipe, name, groupExtent, cols);
}

const sparseLabel = (s: SparseWeight | null): string => (s ? `, ${patternString(s.pattern)} ${s.recipe.name}` : '');

export class MaxPool2d extends Module {
  readonly window: Window2d;
  #argmax: Int32Array | null = null;
  #inShape: Shape = [];
  constructor(kernelSize: number | [number, number], opts: { stride?: number | [number, number]; padding?: number | [number, number] } = {}) {
    super();
    const kernel = pair(kernelSize, 'kernelSize', 1);
    this.window = { kernel, stride: pair(opts.stride ?? kernel, 'stride', 1), padding: pair(opts.padding ?? 0, 'padding', 0) };
  }
  override describe(): string { return `MaxPool2d(${this.window.kernel.join('x')}, stride ${this.window.stride.join('x')})`; }
  forward(x: Tensor): Tensor {
    const t = f32Input(x);
    const g = windowOutput(t.shape, this.window);
    const outShape = [g.batch, g.oh, g.ow, g.c];
    const size = outShape.reduce((a, b) => a * b, 1);
    const argmax = this.#argmax?.length === size ? this.#argmax : new Int32Array(size);
    const r = maxPoolForward(t, this.window, { out: this.buffer('y', outShape, t), argmax });
    this.#argmax = r.argmax;
    this.#inShape = t.shape;
    return r.y;
  }
  backward(dy: Tensor): Tensor {
    const argmax = this.saved(this.#argmax);
    return maxPoolBackward(f32Input(dy, 'dy'), argmax, this.#inShape, this.window, { out: this.buffer('dx', this.#inShape, dy) });
  }
}

/** [batch, ...] → [batch, ...shape] (e.g. flat MNIST rows [batch, 784] → NHWC images [batch, 28, 28, 1]). */
export class Reshape extends Module {
  #inShape: Shape = [];
  constructor(readonly shape: number[]) {
    super();
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 1)) fail('E_SHAPE', 'shape', shape, 'an array of positive integers');
  }
  override describe(): string { return `Reshape([${this.shape.join(', ')}])`; }
  forward(x: Tensor): Tensor {
    const t = f32Input(x);
    this.#inShape = t.shape;
    return t.reshape([t.shape[0], ...this.shape]);
  }
  backward(dy: Tensor): Tensor {
    return f32Input(dy, 'dy').reshape(this.#inShape as number[]);
  }
}

/** [batch, ...] → [batch, features]. */
export class Flatten extends Module {
  #inShape: Shape = [];
  forward(x: Tensor): Tensor {
    const t = f32Input(x);
    if (t.rank < 1) fail('E_SHAPE', 'x', t, 'a tensor of rank >= 1');
    this.#inShape = t.shape;
    return t.reshape([t.shape[0], t.shape[0] === 0 ? 0 : t.size / t.shape[0]]);
  }
  backward(dy: Tensor): Tensor {
    return f32Input(dy, 'dy').reshape(this.#inShape as number[]);
  }
}

export class ReLU extends Module {
  #y: Tensor | null = null;
  forward(x: Tensor): Tensor {
    const t = f32Input(x);
    this.#y = reluForward(t, { out: this.buffer('y', t.shape, t) });
    return this.#y;
  }
  backward(dy: Tensor): Tensor {
    const y = this.saved(this.#y);
    return reluBackward(f32Input(dy, 'dy').reshape(y.shape as number[]), y, { out: this.buffer('dx', y.shape, y) });
  }
}

export class GELU extends Module {
  #x: Tensor | null = null;
  forward(x: Tensor): Tensor {
    const t = f32Input(x);
    this.#x = t;
    return geluForward(t, { out: this.buffer('y', t.shape, t) });
  }
  backward(dy: Tensor): Tensor {
    const x = this.saved(this.#x);
    return geluBackward(f32Input(dy, 'dy').reshape(x.shape as number[]), x, { out: this.buffer('dx', x.shape, x) });
  }
}

/** LayerNorm over the last dimension, with a learned scale γ (ones) and shift β (zeros) unless affine is false. */
export class LayerNorm extends Module {
  readonly gamma: Parameter | null;
  readonly beta: Parameter | null;
  #saved: { x: Tensor; mean: Tensor; rstd: Tensor } | null = null;
  constructor(readonly dim: number, readonly opts: { eps?: number; affine?: boolean } = {}) {
    super();
    positive(dim, 'dim');
    const affine = opts.affine ?? true;
    this.gamma = affine ? new Parameter(ones([dim]), false) : null;
    this.beta = affine ? new Parameter(zeros([dim]), false) : null;
  }
  override ownParameters(): [string, Parameter][] {
    return this.gamma && this.beta ? [['gamma', this.gamma], ['beta', this.beta]] : [];
  }
  override describe(): string { return `LayerNorm(${this.dim})`; }
  forward(x: Tensor): Tensor {
    const t = f32Input(x);
    if (t.shape[t.rank - 1] !== this.dim) fail('E_SHAPE', 'x', t, `a tensor [..., ${this.dim}]`);
    const rows = t.size / this.dim;
    const r = layerNormForward(t, this.gamma?.value ?? null, this.beta?.value ?? null, this.opts.eps ?? 1e-5, {
      out: this.buffer('y', t.shape, t), mean: this.buffer('mean', [rows], t), rstd: this.buffer('rstd', [rows], t),
    });
    this.#saved = { x: t, mean: r.mean, rstd: r.rstd };
    return r.y;
  }
  backward(dy: Tensor): Tensor {
    const s = this.saved(this.#saved);
    const r = layerNormBackward(f32Input(dy, 'dy').reshape(s.x.shape as number[]), s.x, this.gamma?.value ?? null, s.mean, s.rstd, !!this.beta, {
      out: this.buffer('dx', s.x.shape, s.x), dgamma: this.gamma?.grad, dbeta: this.beta?.grad,
    });
    return r.dx;
  }
}

/** Inverted dropout (training only). The mask comes from a counter-based generator, so none is stored. */
export class Dropout extends Module {
  readonly seed: number;
  #offset = 0;
  #last: { offset: number; active: boolean; shape: Shape } | null = null;
  constructor(readonly p: number, opts: { seed?: number } = {}) {
    super();
    if (typeof p !== 'number' || !(p >= 0 && p < 1)) fail('E_VALUE', 'p', p, 'a probability in [0, 1)');
    this.seed = opts.seed ?? randomSeed();
  }
  override describe(): string { return `Dropout(${this.p})`; }
  forward(x: Tensor): Tensor {
    const t = f32Input(x);
    const active = this.training && this.p > 0;
    this.#last = { offset: this.#offset, active, shape: t.shape };
    if (!active) return t;
    const y = dropout(t, this.p, this.seed, this.#offset, { out: this.buffer('y', t.shape, t) });
    this.#offset += t.size;
    return y;
  }
  backward(dy: Tensor): Tensor {
    const s = this.saved(this.#last);
    const d = f32Input(dy, 'dy').reshape(s.shape as number[]);
    if (!s.active) return d;
    return dropout(d, this.p, this.seed, s.offset, { out: this.buffer('dx', s.shape, d) });
  }
}

/** Modules applied in order; children are named by index, or by the names given. */
export class Sequential extends Module {
  readonly #children: [string, Module][];
  constructor(layers: Module[] | [string, Module][] | Record<string, Module>) {
    super();
    const list: [string, Module][] = Array.isArray(layers)
      ? layers.map((l, i) => (Array.isArray(l) ? l : [String(i), l]) as [string, Module])
      : Object.entries(layers);
    for (const [name, m] of list) if (!(m instanceof Module)) fail('E_TYPE', `layers.${name}`, m, 'a Module');
    if (new Set(list.map(([, m]) => m)).size !== list.length) fail('E_VALUE', 'layers', list.length, 'distinct module instances');
    this.#children = list;
  }
  override namedChildren(): [string, Module][] { return this.#children; }
  override describe(): string { return `Sequential(${this.#children.length})`; }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const [, m] of this.#children) h = m.forward(h);
    return h;
  }
  backward(dy: Tensor): Tensor | null {
    // Without an input gradient to return, the layers before the first one with parameters need not run.
    const kids = this.#children;
    const first = this.requiresInputGrad ? 0 : Math.max(0, kids.findIndex(([, m]) => m.parameters().length > 0));
    let d: Tensor | null = dy;
    for (let i = kids.length - 1; i >= first; i--) {
      const m = kids[i][1];
      if (i === first) m.requiresInputGrad = this.requiresInputGrad;
      d = m.backward(d!);
      if (d === null && i > first) fail('E_VALUE', `layer ${kids[i][0]}`, null, 'an input gradient (only the first layer may skip it)');
    }
    return this.requiresInputGrad ? d : null;
  }
}
