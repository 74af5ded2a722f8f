// The Transformer modules (lib/nn/transformer.ts) against float64 references written here: Embedding gather and
// scatter-add, the residual add, the token cross-entropy with ignored rows, a TransformerBlock and whole GPT models
// (tied and untied head) by central differences of a float64 forward, parameter names, and N:M training with a
// recipe on every block Linear.
import { describe, expect, it } from 'vitest';
import { Tensor, nm } from '../lib/index.js';
import { CausalSelfAttention, Embedding, GPT, TransformerBlock } from '../lib/nn/transformer.js';
import { gpt } from '../lib/nn/models.js';
import { SoftmaxCrossEntropy } from '../lib/nn/loss.js';
import { add, embeddingBackward, embeddingForward, softmaxCrossEntropy, softmaxCrossEntropyBackward } from '../lib/nn/elementwise.js';
import { AdamW } from '../lib/optim/adamw.js';
import { SGD } from '../lib/optim/sgd.js';
import { Parameter } from '../lib/nn/module.js';
import { SRSTE } from '../lib/recipes/index.js';
import { sparseWeights } from '../lib/train/trainer.js';
import { erf, poison, prng } from './helpers.js';
import { arr, dot, expectClose, expectGrad, f32, f64, refAttention, refLayerNorm, refLinear, values } from './nn-helpers.js';

const ids = (v: number[], shape: number[]): Tensor => new Tensor(shape, 'float32', Float32Array.from(v));
const gelu = (v: number): number => 0.5 * v * (1 + erf(v / Math.SQRT2));

/** Mean token cross-entropy of logits [rows, V] over the rows whose label is not −1. */
function refXent(z: Float64Array, labels: Int32Array, V: number): number {
  let s = 0, n = 0;
  for (let r = 0; r < labels.length; r++) {
    if (labels[r] === -1) continue;
    const row = z.subarray(r * V, (r + 1) * V);
    const mx = Math.max(...row);
    s += mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0)) - row[labels[r]];
    n++;
  }
  return s / n;
}

interface Cfg { B: number; T: number; V: number; d: number; H: number; L: number; tied: boolean }

/** float64 pre-norm block on x [B·T, d] with parameters under `pre` (nanoGPT names). */
function refBlock(x: Float64Array, P: Record<string, Float64Array>, pre: string, c: Cfg): Float64Array {
  const rows = c.B * c.T, d = c.d;
  const a = refLayerNorm(x, P[`${pre}ln_1.weight`], P[`${pre}ln_1.bias`], rows, d, 1e-5);
  const qkv = refLinear(a, P[`${pre}attn.c_attn.weight`], P[`${pre}attn.c_attn.bias`], rows, d, 3 * d);
  const att = refAttention(qkv, [c.B, c.T, c.H, d / c.H]).y;
  const o = refLinear(att, P[`${pre}attn.c_proj.weight`], P[`${pre}attn.c_proj.bias`], rows, d, d);
  const x1 = x.map((v, i) => v + o[i]);
  const m = refLayerNorm(x1, P[`${pre}ln_2.weight`], P[`${pre}ln_2.bias`], rows, d, 1e-5);
  const f = refLinear(m, P[`${pre}mlp.c_fc.weight`], P[`${pre}mlp.c_fc.bias`], rows, d, 4 * d).map(gelu);
  const o2 = refLinear(f, P[`${pre}mlp.c_proj.weight`], P[`${pre}mlp.c_proj.bias`], rows, 4 * d, d);
  return x1.map((v, i) => v + o2[i]);
}

/** float64 GPT logits [B·T, V] of tokens. */
function refGpt(tokens: number[], P: Record<string, Float64Array>, c: Cfg): Float64Array {
  const d = c.d;
  let x = new Float64Array(c.B * c.T * d);
  for (let r = 0; r < c.B * c.T; r++)
    for (let k = 0; k < d; k++) x[r * d + k] = P['transformer.wte.weight'][tokens[r] * d + k] + P['transformer.wpe.weight'][(r % c.T) * d + k];
  for (let l = 0; l < c.L; l++) x = refBlock(x, P, `transformer.h.${l}.`, c);
  x = refLayerNorm(x, P['transformer.ln_f.weight'], P['transformer.ln_f.bias'], c.B * c.T, d, 1e-5);
  return refLinear(x, c.tied ? P['transformer.wte.weight'] : P['lm_head.weight'], null, c.B * c.T, d, c.V);
}

describe('Embedding', () => {
  it('gathers rows and scatter-adds gradients, repeated ids summed, with and without accumulate', () => {
    const [V, dim] = [5, 70]; // 70 columns: two column blocks, the second partial
    const table = values(V * dim, 1).map(Math.fround);
    const tok = [3, 0, 3, 4, 3, 1];
    const out = poison(new Tensor([2, 3, dim], 'float32', new Float32Array(6 * dim)));
    embeddingForward(ids(tok, [2, 3]), f32(table, [V, dim]), { out });
    const want = new Float64Array(6 * dim);
    tok.forEach((t, r) => { for (let k = 0; k < dim; k++) want[r * dim + k] = table[t * dim + k]; });
    expectClose('rows', arr(out), want, 0);
    const dy = values(6 * dim, 2);
    const dt = poison(new Tensor([V, dim], 'float32', new Float32Array(V * dim)));
    embeddingBackward(f32(dy, [2, 3, dim]), ids(tok, [2, 3]), V, { out: dt });
    const g = new Float64Array(V * dim);
    tok.forEach((t, r) => { for (let k = 0; k < dim; k++) g[t * dim + k] += dy[r * dim + k]; });
    expectClose('dtable', arr(dt), g, 1e-6);
    embeddingBackward(f32(dy, [2, 3, dim]), ids(tok, [2, 3]), V, { out: dt, accumulate: true });
    expectClose('dtable accumulated', arr(dt), g.map((v) => 2 * v), 1e-6);
    embeddingForward(ids(tok, [2, 3]), f32(table, [V, dim]), { out, accumulate: true });
    expectClose('rows accumulated', arr(out), want.map((v) => 2 * v), 1e-6);
  });

  it('the module: forward, backward into weight.grad, null input gradient', () => {
    const e = new Embedding(7, 4, { seed: 3 });
    const tok = [6, 6, 2, 0];
    const y = e.forward(ids(tok, [4]));
    expect(y.shape).toEqual([4, 4]);
    const w = f64(e.weight.value);
    const r = values(16, 4);
    expect(e.backward(f32(r, [4, 4]))).toBeNull();
    expectGrad('weight', w, arr(e.weight.grad), () => {
      let s = 0;
      tok.forEach((t, i) => { for (let k = 0; k < 4; k++) s += w[t * 4 + k] * r[i * 4 + k]; });
      return s;
    });
  });

  it('rejects ids that are not integers in [0, vocab)', () => {
    const table = f32(values(12, 1), [3, 4]);
    for (const bad of [3, -1, 1.5, NaN])
      expect(() => embeddingForward(ids([0, bad], [2]), table)).toThrowError(expect.objectContaining({ code: 'E_VALUE' }));
    expect(() => embeddingBackward(f32(values(8, 1), [2, 4]), ids([0, 7], [2]), 3)).toThrowError(expect.objectContaining({ code: 'E_VALUE' }));
  });
});

describe('add and the token cross-entropy', () => {
  it('add writes a + b, in place too', () => {
    const a = values(33, 1), b = values(33, 2);
    const out = poison(new Tensor([3, 11], 'float32', new Float32Array(33)));
    expectClose('a + b', arr(add(f32(a, [3, 11]), f32(b, [3, 11]), { out })), a.map((v, i) => v + b[i]), 1e-7);
    const at = f32(a, [3, 11]);
    add(at, f32(b, [3, 11]), { out: at });
    expectClose('in place', arr(at), a.map((v, i) => v + b[i]), 1e-7);
  });

  it('rows labelled -1 count for nothing: loss is the mean over the others, their gradient is 0', () => {
    const [rows, V] = [7, 6];
    const z = values(rows * V, 5, 3);
    const labels = Int32Array.from([2, -1, 0, 5, -1, -1, 1]);
    const loss = new SoftmaxCrossEntropy();
    const r = loss.forward(f32(z, [rows, V]), labels);
    expect(r.loss).toBeCloseTo(refXent(z, labels, V), 5);
    const g = arr(loss.backward());
    for (const i of [1, 4, 5]) expect(Array.from(g.subarray(i * V, (i + 1) * V))).toEqual(new Array(V).fill(0));
    expectGrad('dz', z, g, () => refXent(z, labels, V));
    const all = Int32Array.from(new Array(rows).fill(-1));
    const none = softmaxCrossEntropy(f32(z, [rows, V]), all);
    expect([none.loss, none.count, none.correct]).toEqual([0, 0, 0]);
    expect(Array.from(arr(softmaxCrossEntropyBackward(none.probs, all))).every((v) => v === 0)).toBe(true);
    expect(() => softmaxCrossEntropy(f32(z, [rows, V]), Int32Array.from([0, -2, 0, 0, 0, 0, 0]))).toThrowError(/labels\[1\]: got -2/);
  });
});

describe('gradient clipping by global norm', () => {
  it('matches a float64 norm over many parameters and scales every gradient by max/(norm + 1e-6)', () => {
    const sizes = [3, 40000, 17]; // one gradient larger than the native block of 2^14
    const ps = sizes.map((n, i) => {
      const p = new Parameter(f32(new Float64Array(n), [n]));
      (p.grad.storage() as Float32Array).set(values(n, 10 + i));
      return p;
    });
    const before = ps.map((p) => f64(p.grad));
    const norm = Math.sqrt(before.reduce((a, g) => a + g.reduce((s, v) => s + v * v, 0), 0));
    const opt = new SGD(ps, { lr: 1 });
    expect(opt.clipGradNorm(norm * 2)).toBeCloseTo(norm, 6);
    ps.forEach((p, i) => expectClose(`unclipped ${i}`, arr(p.grad), before[i], 0));
    expect(opt.clipGradNorm(1)).toBeCloseTo(norm, 6);
    ps.forEach((p, i) => expectClose(`clipped ${i}`, arr(p.grad), before[i].map((v) => v / (norm + 1e-6)), 1e-6));
  });
});

describe('TransformerBlock and CausalSelfAttention', () => {
  it('a block: output, dx and every parameter gradient vs float64 differences', () => {
    const c: Cfg = { B: 2, T: 5, V: 0, d: 8, H: 2, L: 1, tied: true };
    const model = gpt({ vocabSize: 3, context: 8, layers: 1, dModel: 8, heads: 2, seed: 21 });
    const block = model.transformer.h.children()[0] as TransformerBlock;
    expect(block).toBeInstanceOf(TransformerBlock);
    expect((block.attn as CausalSelfAttention).heads).toBe(2);
    const x = values(c.B * c.T * c.d, 22);
    const y = block.forward(f32(x, [c.B, c.T, c.d]));
    const P = Object.fromEntries(block.namedParameters().map(([n, p]) => [n, f64(p.value)]));
    expectClose('y', arr(y), refBlock(x, P, '', c), 1e-5);
    const r = values(y.size, 23);
    const dx = arr(block.backward(f32(r, [c.B, c.T, c.d]))).slice();
    const loss = () => dot(refBlock(x, P, '', c), r);
    expectGrad('dx', x, dx, loss);
    for (const [n, p] of block.namedParameters()) expectGrad(n, P[n], arr(p.grad), loss);
  });
});

describe('GPT', () => {
  for (const tied of [true, false]) {
    it(`whole model (${tied ? 'tied' : 'untied'} head): logits, token loss with padding, every parameter gradient`, () => {
      const c: Cfg = { B: 2, T: 6, V: 11, d: 8, H: 2, L: 2, tied };
      const model = new GPT({ vocabSize: c.V, context: 9, layers: c.L, dModel: c.d, heads: c.H, tiedHead: tied, seed: 31 });
      const r = prng(32);
      const tok = Array.from({ length: c.B * c.T }, () => Math.floor(r() * c.V));
      tok[3] = tok[4] = tok[9]; // a repeated id
      const labels = Int32Array.from({ length: c.B * c.T }, (_, i) => (i % 5 === 4 ? -1 : Math.floor(r() * c.V)));
      const logits = model.forward(ids(tok, [c.B, c.T]));
      expect(logits.shape).toEqual([c.B * c.T, c.V]);
      const P = Object.fromEntries(model.namedParameters().map(([n, p]) => [n, f64(p.value)]));
      expectClose('logits', arr(logits), refGpt(tok, P, c), 1e-4);
      const loss = new SoftmaxCrossEntropy();
      expect(loss.forward(logits, labels).loss).toBeCloseTo(refXent(refGpt(tok, P, c), labels, c.V), 5);
      expect(model.backward(loss.backward())).toBeNull();
      for (const [n, p] of model.namedParameters()) expectGrad(n, P[n], arr(p.grad), () => refXent(refGpt(tok, P, c), labels, c.V));
    });
  }

  it("names its parameters as nanoGPT, in PyTorch's [out, in] layout", () => {
    const m = gpt({ vocabSize: 10, context: 16, layers: 2, dModel: 8, heads: 2, tiedHead: false, seed: 1 });
    const shapes = Object.fromEntries(m.namedParameters().map(([n, p]) => [n, [...p.shape]]));
    const block = (i: number) => ({
      [`transformer.h.${i}.ln_1.weight`]: [8], [`transformer.h.${i}.ln_1.bias`]: [8],
      [`transformer.h.${i}.attn.c_attn.weight`]: [24, 8], [`transformer.h.${i}.attn.c_attn.bias`]: [24],
      [`transformer.h.${i}.attn.c_proj.weight`]: [8, 8], [`transformer.h.${i}.attn.c_proj.bias`]: [8],
      [`transformer.h.${i}.ln_2.weight`]: [8], [`transformer.h.${i}.ln_2.bias`]: [8],
      [`transformer.h.${i}.mlp.c_fc.weight`]: [32, 8], [`transformer.h.${i}.mlp.c_fc.bias`]: [32],
      [`transformer.h.${i}.mlp.c_proj.weight`]: [8, 32], [`transformer.h.${i}.mlp.c_proj.bias`]: [8],
    });
    expect(shapes).toEqual({
      'transformer.wte.weight': [10, 8], 'transformer.wpe.weight': [16, 8], ...block(0), ...block(1),
      'transformer.ln_f.weight': [8], 'transformer.ln_f.bias': [8], 'lm_head.weight': [10, 8],
    });
    expect(gpt({ vocabSize: 10, context: 16, layers: 1, dModel: 8, heads: 2, seed: 1 }).namedParameters().some(([n]) => n === 'lm_head.weight')).toBe(false);
  });

  it('dropout: eval mode is deterministic and dropout-free; training mode drops', () => {
    const o = { vocabSize: 7, context: 8, layers: 1, dModel: 8, heads: 2, seed: 5 };
    const tok = ids([1, 2, 3, 4, 5, 6, 0, 1], [1, 8]);
    const plain = arr(new GPT(o).eval().forward(tok)).slice();
    const m = new GPT({ ...o, dropout: 0.2 });
    expect(arr(m.eval().forward(tok))).toEqual(plain);
    expect(arr(m.train().forward(tok))).not.toEqual(plain);
  });

  it('rejects bad options and inputs with typed errors', () => {
    const o = { vocabSize: 7, context: 4, layers: 1, dModel: 8, heads: 2 };
    expect(() => new GPT({ ...o, heads: 3 })).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => new GPT({ ...o, layers: 0 })).toThrowError(expect.objectContaining({ code: 'E_VALUE' }));
    const m = new GPT(o);
    expect(() => m.forward(ids([0, 1, 2, 3, 4], [1, 5]))).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => m.forward(ids([0, 9], [1, 2]))).toThrowError(expect.objectContaining({ code: 'E_VALUE' }));
    expect(() => new GPT(o).backward(f32(values(14, 1), [2, 7]))).toThrowError(expect.objectContaining({ code: 'E_VALUE' }));
  });

  it('SR-STE 2:4 on every block Linear: a few AdamW steps lower the loss and the deployed weights are 2:4', () => {
    const recipe = new SRSTE();
    const m = gpt({ vocabSize: 9, context: 8, layers: 2, dModel: 16, heads: 2, recipe, pattern: '2:4', dense: ['mlp.c_proj'], seed: 7 });
    const sparse = sparseWeights(m);
    expect(sparse.map((s) => s.name)).toEqual([0, 1].flatMap((i) => [
      `transformer.h.${i}.attn.c_attn.weight`, `transformer.h.${i}.attn.c_proj.weight`, `transformer.h.${i}.mlp.c_fc.weight`,
    ]));
    const opt = new AdamW(m.parameters(), { lr: 3e-3 });
    const steps = 12;
    recipe.plan(steps);
    const tok = ids(Array.from({ length: 16 }, (_, i) => (i * 5) % 9), [2, 8]);
    const labels = Int32Array.from({ length: 16 }, (_, i) => ((i + 1) * 5) % 9);
    const loss = new SoftmaxCrossEntropy();
    const losses: number[] = [];
    for (let s = 0; s < steps; s++) {
      recipe.setStep(s);
      losses.push(loss.forward(m.forward(tok), labels).loss);
      m.backward(loss.backward());
      opt.clipGradNorm(1);
      opt.step();
      for (const { s: w } of sparse) w.afterUpdate();
    }
    expect(losses[steps - 1]).toBeLessThan(losses[0]);
    for (const { s } of sparse) expect(nm.check(recipe.deployWeight(s), '2:4').ok).toBe(true);
  });
});
