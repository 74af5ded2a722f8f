/**
 * A GPT-style decoder-only Transformer in nanoGPT's layout, with explicit forward/backward like every module:
 *   tokens [B, T] (float32 token ids) → wte[token] + wpe[position] → drop → h.0 … h.{L−1} → ln_f → head → logits [B·T, V]
 *   block (pre-norm):  x += attn(ln_1(x));  x += mlp(ln_2(x))
 *   attn:  c_attn (d → 3d: q, k, v) → causal attention (native op, lib/nn/attention.ts; attn_dropout on the
 *          probabilities) → c_proj (d → d) → resid_dropout
 *   mlp:   c_fc (d → 4d) → GELU (the exact erf form, as PyTorch's nn.GELU() default) → c_proj (4d → d) → dropout
 * Dropout sits where nanoGPT has it: after the embeddings (transformer.drop), on the attention probabilities, and
 * on each residual branch (attn.resid_dropout, mlp.dropout). The head is tied to wte by default (logits = h·wteᵀ,
 * and wte's gradient is the sum of the head's and the embedding's); untied it is lm_head, a dense Linear d → V.
 * Parameter paths are nanoGPT's (transformer.h.0.attn.c_attn.weight, …) with PyTorch nn.Linear layout [out, in],
 * so a PyTorch GPT loads the weights by name. Every Linear inside the blocks trains N:M sparse with the options'
 * pattern and recipe unless named in `dense`; embeddings, LayerNorms and the head stay dense.
 * Initialisation is nanoGPT's: N(0, 0.02) for embeddings and Linear weights, N(0, 0.02/√(2L)) for the residual
 * projections (c_proj), zero biases, LayerNorm weight 1 and bias 0.
 */
import { fail } from '../errors.js';
import { parsePattern } from '../pattern.js';
import { randomSeed } from '../random.js';
import { Dense } from '../recipes/dense.js';
import { checkTensor, randn, Tensor, type Shape } from '../tensor.js';
import { Module, Parameter } from './module.js';
import { Dropout, GELU, LayerNorm, Linear, Sequential, type SparsityOptions } from './layers.js';
import { add, embeddingBackward, embeddingForward } from './elementwise.js';
import { attentionBackward, attentionForward } from './attention.js';
import { inputGrad, linearForward, matmulTN } from './linalg.js';
import { requireFloat32Products } from './amp.js';
import type { ModelOptions } from './models.js';

export interface GptOptions extends ModelOptions {
  vocabSize: number;
  /** Longest sequence (rows of the positional embedding). */
  context: number;
  layers: number;
  dModel: number;
  heads: number;
  /** Dropout probability everywhere nanoGPT has one (default 0). */
  dropout?: number;
  /** Output head tied to the token embedding (default true). */
  tiedHead?: boolean;
}

function positive(v: unknown, arg: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail('E_VALUE', arg, v, 'an integer >= 1');
  return v;
}

function f32Input(x: unknown, arg = 'x'): Tensor {
  const t = checkTensor(x, arg);
  if (t.dtype !== 'float32') fail('E_DTYPE', arg, t, 'a float32 tensor');
  return t;
}

/** Overwrites a parameter with N(0, std²) samples (nanoGPT's initialisation). */
function normalInit(p: Parameter, std: number, seed: number): void {
  (p.value.storage() as Float32Array).set(randn(p.shape, { seed, std }).storage() as Float32Array);
}

/** A lookup table: ids (float32 integers in [0, num)) → rows of weight [num, dim]. */
export class Embedding extends Module {
  readonly weight: Parameter;
  /** Whether backward() adds to weight.grad instead of overwriting it (set when a tied head has written it first). */
  accumulateGrad = false;
  #ids: Tensor | null = null;

  constructor(readonly num: number, readonly dim: number, opts: { seed?: number; std?: number } = {}) {
    super();
    positive(num, 'num');
    positive(dim, 'dim');
    this.weight = new Parameter(randn([num, dim], { seed: opts.seed ?? randomSeed(), std: opts.std ?? 0.02 }));
  }
  override ownParameters(): [string, Parameter][] { return [['weight', this.weight]]; }
  override describe(): string { return `Embedding(${this.num}, ${this.dim})`; }

  /** [...ids.shape, dim]. */
  forward(ids: Tensor): Tensor {
    const t = f32Input(ids, 'ids');
    this.#ids = t;
    return embeddingForward(t, this.weight.value, { out: this.buffer('y', [...t.shape, this.dim], t) });
  }

  /** out += weight[ids] (out [...ids.shape, dim]): how the positional embedding joins the token embedding. */
  forwardAdd(ids: Tensor, out: Tensor): Tensor {
    const t = f32Input(ids, 'ids');
    this.#ids = t;
    return embeddingForward(t, this.weight.value, { out, accumulate: true });
  }

  /** Scatter-adds dy into weight.grad (repeated ids sum). Ids have no gradient: returns null. */
  backward(dy: Tensor): null {
    const ids = this.saved(this.#ids);
    embeddingBackward(f32Input(dy, 'dy'), ids, this.num, { out: this.weight.grad, accumulate: this.accumulateGrad });
    return null;
  }
}

/** LayerNorm whose parameters carry PyTorch's names (weight, bias), as in nanoGPT checkpoints. */
class NamedLayerNorm extends LayerNorm {
  override ownParameters(): [string, Parameter][] { return [['weight', this.gamma!], ['bias', this.beta!]]; }
}

interface LayerPlan {
  /** The sparsity of the Linear at this path (undefined: dense). */
  sparsity(path: string): SparsityOptions | undefined;
  dropout: number;
  /** A fresh seed for each Linear, Dropout and embedding, in construction order. */
  seed(): number;
  layers: number;
}

function planFor(o: GptOptions): LayerPlan {
  const dense = o.dense ?? [];
  if (!Array.isArray(dense) || dense.some((d) => typeof d !== 'string')) fail('E_TYPE', 'dense', dense, 'an array of layer names');
  const p = o.dropout ?? 0;
  if (typeof p !== 'number' || !(p >= 0 && p < 1)) fail('E_VALUE', 'dropout', p, 'a probability in [0, 1)');
  const pattern = parsePattern(o.pattern ?? '2:4'), recipe = o.recipe ?? new Dense();
  let next = o.seed ?? randomSeed();
  return {
    sparsity: (path) => (dense.some((d) => path === d || path.endsWith(`.${d}`)) ? undefined : { pattern, recipe }),
    dropout: p,
    seed: () => next++,
    layers: o.layers,
  };
}

function linear(plan: LayerPlan, path: string, inF: number, outF: number, std: number): Linear {
  const l = new Linear(inF, outF, { seed: plan.seed(), sparsity: plan.sparsity(path) });
  normalInit(l.weight, std, plan.seed());
  (l.bias!.value.storage() as Float32Array).fill(0);
  return l;
}

/**
 * Causal multi-head self-attention over x [B, T, d]: c_attn → attention → c_proj → resid_dropout. lastForwardFlops
 * counts the attention products (q·kᵀ and p·v over the causal half); c_attn and c_proj count their own.
 */
export class CausalSelfAttention extends Module {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  readonly resid_dropout: Dropout;
  /** Dropout on the attention probabilities, from (seed, offset) as lib/nn dropout. */
  readonly attnDropout: number;
  readonly seed: number;
  #offset = 0;
  #saved: { qkv: Tensor; probs: Tensor; p: number; offset: number } | null = null;

  constructor(readonly dModel: number, readonly heads: number, plan: LayerPlan, path: string) {
    super();
    if (dModel % heads !== 0) fail('E_SHAPE', 'dModel', dModel, `a multiple of heads = ${heads}`);
    const std = 0.02 / Math.sqrt(2 * plan.layers);
    this.c_attn = linear(plan, `${path}.c_attn`, dModel, 3 * dModel, 0.02);
    this.c_proj = linear(plan, `${path}.c_proj`, dModel, dModel, std);
    this.attnDropout = plan.dropout;
    this.seed = plan.seed();
    this.resid_dropout = new Dropout(plan.dropout, { seed: plan.seed() });
  }
  override namedChildren(): [string, Module][] {
    return [['c_attn', this.c_attn], ['c_proj', this.c_proj], ['resid_dropout', this.resid_dropout]];
  }
  override describe(): string { return `CausalSelfAttention(${this.dModel}, ${this.heads} heads)`; }

  forward(x: Tensor): Tensor {
    requireFloat32Products('CausalSelfAttention', 'its fused attention kernels are float32 only');
    const t = f32Input(x);
    if (t.rank !== 3 || t.shape[2] !== this.dModel) fail('E_SHAPE', 'x', t, `a tensor [batch, t, ${this.dModel}]`);
    const [b, n] = t.shape;
    const qkv = this.c_attn.forward(t);
    const p = this.training ? this.attnDropout : 0;
    const r = attentionForward(qkv, this.heads, {
      p, seed: this.seed, offset: this.#offset,
      out: this.buffer('y', [b, n, this.dModel], t), probs: this.buffer('probs', [b, this.heads, n, n], t),
    });
    this.#saved = { qkv, probs: r.probs, p, offset: this.#offset };
    if (p > 0) this.#offset += b * this.heads * n * n;
    this.lastForwardFlops = 4 * b * this.heads * ((n * (n + 1)) / 2) * (this.dModel / this.heads);
    return this.resid_dropout.forward(this.c_proj.forward(r.y));
  }

  /** The probabilities saved by forward() serve one backward() (the op overwrites them). */
  backward(dy: Tensor): Tensor | null {
    const s = this.saved(this.#saved);
    this.#saved = null;
    const dproj = this.c_proj.backward(this.resid_dropout.backward(dy))!;
    const dqkv = attentionBackward(dproj, s.qkv, s.probs, this.heads, {
      p: s.p, seed: this.seed, offset: s.offset, out: this.buffer('dqkv', s.qkv.shape, s.qkv),
    });
    return this.c_attn.backward(dqkv);
  }
}

/** Pre-norm block over x [B, T, d]: x + attn(ln_1(x)), then + mlp(ln_2(·)). */
export class TransformerBlock extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: CausalSelfAttention;
  readonly ln_2: LayerNorm;
  /** c_fc → gelu → c_proj → dropout. */
  readonly mlp: Sequential;

  constructor(readonly dModel: number, heads: number, plan: LayerPlan, path: string) {
    super();
    this.ln_1 = new NamedLayerNorm(dModel);
    this.attn = new CausalSelfAttention(dModel, heads, plan, `${path}.attn`);
    this.ln_2 = new NamedLayerNorm(dModel);
    this.mlp = new Sequential([
      ['c_fc', linear(plan, `${path}.mlp.c_fc`, dModel, 4 * dModel, 0.02)],
      ['gelu', new GELU()],
      ['c_proj', linear(plan, `${path}.mlp.c_proj`, 4 * dModel, dModel, 0.02 / Math.sqrt(2 * plan.layers))],
      ['dropout', new Dropout(plan.dropout, { seed: plan.seed() })],
    ]);
  }
  override namedChildren(): [string, Module][] {
    return [['ln_1', this.ln_1], ['attn', this.attn], ['ln_2', this.ln_2], ['mlp', this.mlp]];
  }
  override describe(): string { return `TransformerBlock(${this.dModel})`; }

  forward(x: Tensor): Tensor {
    const t = f32Input(x);
    const x1 = add(t, this.attn.forward(this.ln_1.forward(t)), { out: this.buffer('x1', t.shape, t) });
    return add(x1, this.mlp.forward(this.ln_2.forward(x1)), { out: this.buffer('y', t.shape, t) });
  }

  backward(dy: Tensor): Tensor {
    const d = f32Input(dy, 'dy');
    const dx1 = add(d, this.ln_2.backward(this.mlp.backward(d)!), { out: this.buffer('dx1', d.shape, d) });
    return add(dx1, this.ln_1.backward(this.attn.backward(dx1)!), { out: this.buffer('dx', d.shape, d) });
  }
}

/** nanoGPT's `transformer`: embeddings, blocks and the final LayerNorm; tokens [B, T] → hidden states [B, T, d]. */
export class GptBody extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  readonly h: Sequential;
  readonly ln_f: LayerNorm;
  #positions: Tensor | null = null;

  constructor(readonly o: Required<Pick<GptOptions, 'vocabSize' | 'context' | 'dModel' | 'heads' | 'layers'>>, plan: LayerPlan) {
    super();
    this.wte = new Embedding(o.vocabSize, o.dModel, { seed: plan.seed() });
    this.wpe = new Embedding(o.context, o.dModel, { seed: plan.seed() });
    this.drop = new Dropout(plan.dropout, { seed: plan.seed() });
    this.h = new Sequential(Array.from({ length: o.layers }, (_, i) => new TransformerBlock(o.dModel, o.heads, plan, `transformer.h.${i}`)));
    this.ln_f = new NamedLayerNorm(o.dModel);
  }
  override namedChildren(): [string, Module][] {
    return [['wte', this.wte], ['wpe', this.wpe], ['drop', this.drop], ['h', this.h], ['ln_f', this.ln_f]];
  }

  /** The position ids [B, T] (0 … T−1 in every row), made once per shape and device. */
  #positionIds(shape: Shape, device: Tensor['device']): Tensor {
    const p = this.#positions;
    if (p && p.device === device && p.shape[0] === shape[0] && p.shape[1] === shape[1]) return p;
    const [b, n] = shape;
    const ids = new Float32Array(b * n);
    for (let i = 0; i < ids.length; i++) ids[i] = i % n;
    this.#positions = new Tensor([b, n], 'float32', ids).to(device);
    return this.#positions;
  }

  forward(tokens: Tensor): Tensor {
    const t = f32Input(tokens, 'tokens');
    if (t.rank !== 2 || t.shape[1] < 1 || t.shape[1] > this.o.context)
      fail('E_SHAPE', 'tokens', t, `token ids [batch, t] with 1 <= t <= context = ${this.o.context}`);
    const e = this.wpe.forwardAdd(this.#positionIds(t.shape, t.device), this.wte.forward(t));
    return this.ln_f.forward(this.h.forward(this.drop.forward(e)));
  }

  backward(dh: Tensor): null {
    const d = this.drop.backward(this.h.backward(this.ln_f.backward(dh))!);
    this.wpe.backward(d);
    this.wte.backward(d);
    return null;
  }
}

/** The whole language model: tokens [B, T] → logits [B·T, vocabSize]. */
export class GPT extends Module {
  readonly transformer: GptBody;
  /** The untied output head (null when tied to transformer.wte). */
  readonly lm_head: Linear | null;
  readonly options: Readonly<GptOptions>;
  #h: Tensor | null = null;
  #hiddenShape: Shape = [];

  constructor(o: GptOptions) {
    super();
    if (!o || typeof o !== 'object') fail('E_TYPE', 'options', o, 'GPT options { vocabSize, context, layers, dModel, heads }');
    for (const k of ['vocabSize', 'context', 'layers', 'dModel', 'heads'] as const) positive(o[k], k);
    if (o.dModel % o.heads !== 0) fail('E_SHAPE', 'dModel', o.dModel, `a multiple of heads = ${o.heads}`);
    const plan = planFor(o);
    this.options = { ...o };
    this.transformer = new GptBody(o, plan);
    const tied = o.tiedHead ?? true;
    this.lm_head = tied ? null : new Linear(o.dModel, o.vocabSize, { bias: false, seed: plan.seed() });
    if (this.lm_head) normalInit(this.lm_head.weight, 0.02, plan.seed());
    this.transformer.wte.accumulateGrad = tied;
  }
  override namedChildren(): [string, Module][] {
    return this.lm_head ? [['transformer', this.transformer], ['lm_head', this.lm_head]] : [['transformer', this.transformer]];
  }
  override describe(): string {
    const o = this.options;
    return `GPT(${o.layers} layers, d ${o.dModel}, ${o.heads} heads, context ${o.context}, vocab ${o.vocabSize}${this.lm_head ? '' : ', tied head'})`;
  }

  /** logits [B·T, vocabSize] for tokens [B, T] (float32 token ids). */
  forward(tokens: Tensor): Tensor {
    const h = this.transformer.forward(tokens);
    const h2 = h.reshape([-1, this.options.dModel]);
    this.#h = h2;
    this.#hiddenShape = h.shape;
    if (this.lm_head) return this.lm_head.forward(h2);
    const wte = this.transformer.wte.weight.value;
    this.lastForwardFlops = 2 * h2.shape[0] * this.options.dModel * this.options.vocabSize;
    return linearForward(h2, wte, null, this.buffer('logits', [h2.shape[0], this.options.vocabSize], h2));
  }

  /** Writes every parameter's gradient from d loss/d logits; token ids have none (returns null). */
  backward(dlogits: Tensor): null {
    const h = this.saved(this.#h);
    const d = f32Input(dlogits, 'dlogits');
    if (d.rank !== 2 || d.shape[0] !== h.shape[0] || d.shape[1] !== this.options.vocabSize)
      fail('E_SHAPE', 'dlogits', d, `a gradient [${h.shape[0]}, ${this.options.vocabSize}] like the logits`);
    let dh: Tensor;
    if (this.lm_head) dh = this.lm_head.backward(d)!;
    else {
      const wte = this.transformer.wte.weight;
      matmulTN(d, h, wte.grad); // the head's part of wte's gradient; the embedding's backward adds its own
      dh = inputGrad(d, wte.value, null, this.buffer('dh', h.shape, h));
    }
    this.transformer.backward(dh.reshape([...this.#hiddenShape]));
    return null;
  }
}
