/**
 * The training ops of the 'cuda' backend (native/cuda/elementwise.cu, optim.cu, attention.cu, convert.cu): one entry
 * per op that lib/nn/elementwise.ts and lib/optim/*.ts send to deviceOp(device, name) for tensors on 'cuda', with the
 * same arguments (already validated there) and the same results as the CPU kernels. float32 tensors (cast and a
 * 16-bit nmTrainPass also float16/bfloat16: mixed precision, lib/nn/amp.ts); masks uint8.
 * Labels and max-pool indices stay host Int32Arrays, as in the public API: they are uploaded / downloaded per call
 * (softmaxCrossEntropy and maxPoolForward therefore wait for the GPU). nmTrainPass makes the step's compressed weight
 * on the device (a cuda SparseTensor with a cuSPARSELt form where the pattern allows: docs/design.md §7).
 */
import { native, type NativeWindow } from './native.js';
import { fail } from './errors.js';
import type { DeviceStorage, DeviceTrainOps } from './device.js';
import { Tensor, checkOut, type Shape } from './tensor.js';
import type { Pattern } from './pattern.js';
import { dtypeBytes, dtypeCode, type DType } from './dtype.js';
import type { TrainPassBuffers, TrainPassResult, Window2d } from './nn/elementwise.js';
import { SparseTensor } from './compress.js';
import type { AttentionOptions, AttentionSaved } from './nn/attention.js';

const dev = (t: Tensor, arg: string): DeviceStorage => t.deviceStorage(arg);
const numelOf = (s: Shape): number => s.reduce((a, b) => a * b, 1);

/** An output on 'cuda' (float32 unless said): `out` when given (validated), else a new tensor. */
function output(out: unknown, shape: Shape, arg = 'options.out', dtype: DType = 'float32'): Tensor {
  const t = checkOut(out, shape, dtype, 'cuda', arg);
  if (t) return t;
  return new Tensor(shape, dtype, native.cudaAlloc(numelOf(shape) * dtypeBytes(dtype)), 'cuda');
}

function rowsCols(t: Tensor): [number, number] {
  const cols = t.shape[t.rank - 1] ?? 1;
  return [cols === 0 ? 0 : t.size / cols, cols];
}

function onCuda(t: Tensor | null | undefined, arg: string): void {
  if (t && t.device !== 'cuda') fail('E_DEVICE', arg, t, "a tensor on 'cuda'");
}

function geometry(shape: Shape, w: Window2d): NativeWindow {
  const [batch, h, wd, c] = shape;
  return {
    batch, h, w: wd, c, kh: w.kernel[0], kw: w.kernel[1], strideH: w.stride[0], strideW: w.stride[1], padH: w.padding[0],
    padW: w.padding[1],
  };
}
function outSize(shape: Shape, w: Window2d): [number, number] {
  return [Math.floor((shape[1] + 2 * w.padding[0] - w.kernel[0]) / w.stride[0]) + 1, Math.floor((shape[2] + 2 * w.padding[1] - w.kernel[1]) / w.stride[1]) + 1];
}

export const trainOps = {
  biasAdd(y: Tensor, b: Tensor): Tensor {
    onCuda(b, 'bias');
    const [rows, cols] = rowsCols(y);
    native.cudaBiasAdd(dev(y, 'y'), dev(b, 'bias'), rows, cols);
    return y;
  },

  biasGrad(dy: Tensor, opts: { out?: Tensor } = {}): Tensor {
    const [rows, cols] = rowsCols(dy);
    const out = output(opts.out, [cols]);
    native.cudaBiasGrad(dev(dy, 'dy'), rows, cols, dev(out, 'options.out'));
    return out;
  },

  add(a: Tensor, b: Tensor, opts: { out?: Tensor } = {}): Tensor {
    const out = output(opts.out, a.shape);
    native.cudaAdd(dev(a, 'a'), dev(b, 'b'), dev(out, 'options.out'), a.size);
    return out;
  },

  embeddingForward(ids: Tensor, table: Tensor, opts: { out?: Tensor; accumulate?: boolean } = {}): Tensor {
    const [vocab, dim] = table.shape;
    const out = output(opts.out, [...ids.shape, dim]);
    native.cudaEmbeddingForward(dev(ids, 'ids'), dev(table, 'table'), dev(out, 'options.out'), ids.size, vocab, dim, opts.accumulate ?? false);
    return out;
  },

  embeddingBackward(dy: Tensor, ids: Tensor, vocab: number, opts: { out?: Tensor; accumulate?: boolean } = {}): Tensor {
    const dim = dy.shape[dy.rank - 1];
    const out = output(opts.out, [vocab, dim]);
    native.cudaEmbeddingBackward(dev(dy, 'dy'), dev(ids, 'ids'), dev(out, 'options.out'), ids.size, vocab, dim, opts.accumulate ?? false);
    return out;
  },

  reluForward(x: Tensor, opts: { out?: Tensor } = {}): Tensor {
    const out = output(opts.out, x.shape);
    native.cudaReluForward(dev(x, 'x'), dev(out, 'options.out'), x.size);
    return out;
  },

  reluBackward(dy: Tensor, y: Tensor, opts: { out?: Tensor } = {}): Tensor {
    const out = output(opts.out, dy.shape);
    native.cudaReluBackward(dev(dy, 'dy'), dev(y, 'y'), dev(out, 'options.out'), dy.size);
    return out;
  },

  geluForward(x: Tensor, opts: { out?: Tensor } = {}): Tensor {
    const out = output(opts.out, x.shape);
    native.cudaGeluForward(dev(x, 'x'), dev(out, 'options.out'), x.size);
    return out;
  },

  geluBackward(dy: Tensor, x: Tensor, opts: { out?: Tensor } = {}): Tensor {
    const out = output(opts.out, dy.shape);
    native.cudaGeluBackward(dev(dy, 'dy'), dev(x, 'x'), dev(out, 'options.out'), dy.size);
    return out;
  },

  layerNormForward(x: Tensor, gamma: Tensor | null, beta: Tensor | null, eps: number, opts: { out?: Tensor; mean?: Tensor; rstd?: Tensor } = {}) {
    const [rows, cols] = rowsCols(x);
    const y = output(opts.out, x.shape);
    const mean = output(opts.mean, [rows], 'options.mean'), rstd = output(opts.rstd, [rows], 'options.rstd');
    native.cudaLayerNormForward({
      x: dev(x, 'x'), gamma: gamma && dev(gamma, 'gamma'), beta: beta && dev(beta, 'beta'), y: dev(y, 'options.out'),
      mean: dev(mean, 'options.mean'), rstd: dev(rstd, 'options.rstd'), rows, cols, eps,
    });
    return { y, mean, rstd };
  },

  layerNormBackward(dy: Tensor, x: Tensor, gamma: Tensor | null, mean: Tensor, rstd: Tensor, withBeta: boolean,
    opts: { out?: Tensor; dgamma?: Tensor; dbeta?: Tensor } = {}) {
    for (const [t, a] of [[mean, 'mean'], [rstd, 'rstd']] as const) onCuda(t, a);
    const [rows, cols] = rowsCols(dy);
    const dx = output(opts.out, dy.shape);
    const dgamma = gamma ? output(opts.dgamma, [cols], 'options.dgamma') : null;
    const dbeta = withBeta ? output(opts.dbeta, [cols], 'options.dbeta') : null;
    native.cudaLayerNormBackward({
      dy: dev(dy, 'dy'), x: dev(x, 'x'), gamma: gamma && dev(gamma, 'gamma'), mean: dev(mean, 'mean'), rstd: dev(rstd, 'rstd'),
      dx: dev(dx, 'options.out'), dgamma: dgamma && dev(dgamma, 'options.dgamma'), dbeta: dbeta && dev(dbeta, 'options.dbeta'), rows, cols,
    });
    return { dx, dgamma, dbeta };
  },

  softmaxCrossEntropy(logits: Tensor, labels: Int32Array, opts: { labelSmoothing?: number; probs?: Tensor } = {}) {
    const [rows, cols] = logits.shape;
    const probs = output(opts.probs, logits.shape, 'options.probs');
    const [sum, correct, count] = native.cudaSoftmaxXentForward(dev(logits, 'logits'), labels, dev(probs, 'options.probs'), rows, cols,
      opts.labelSmoothing ?? 0);
    return { loss: count ? sum / count : 0, correct, count, probs };
  },

  softmaxCrossEntropyBackward(probs: Tensor, labels: Int32Array, opts: { labelSmoothing?: number; scale?: number; out?: Tensor; count: number }): Tensor {
    const [rows, cols] = probs.shape;
    const out = output(opts.out, probs.shape);
    native.cudaSoftmaxXentBackward(dev(probs, 'probs'), labels, dev(out, 'options.out'), rows, cols, opts.labelSmoothing ?? 0,
      (opts.scale ?? 1) / Math.max(opts.count, 1));
    return out;
  },

  im2col(x: Tensor, w: Window2d, opts: { out?: Tensor } = {}): Tensor {
    const [oh, ow] = outSize(x.shape, w);
    const out = output(opts.out, [x.shape[0] * oh * ow, w.kernel[0] * w.kernel[1] * x.shape[3]]);
    native.cudaIm2col({ x: dev(x, 'x'), cols: dev(out, 'options.out'), ...geometry(x.shape, w) });
    return out;
  },

  col2im(cols: Tensor, inputShape: Shape, w: Window2d, opts: { out?: Tensor } = {}): Tensor {
    const out = output(opts.out, inputShape);
    native.cudaCol2im({ cols: dev(cols, 'cols'), dx: dev(out, 'options.out'), ...geometry(inputShape, w) });
    return out;
  },

  maxPoolForward(x: Tensor, w: Window2d, opts: { out?: Tensor; argmax?: Int32Array } = {}) {
    const [oh, ow] = outSize(x.shape, w);
    const shape = [x.shape[0], oh, ow, x.shape[3]];
    const y = output(opts.out, shape);
    const argmax = opts.argmax ?? new Int32Array(y.size);
    if (argmax.length !== y.size) fail('E_SHAPE', 'options.argmax', argmax, `an Int32Array of ${y.size} elements`);
    native.cudaMaxPoolForward({ x: dev(x, 'x'), y: dev(y, 'options.out'), argmax, ...geometry(x.shape, w) });
    return { y, argmax };
  },

  maxPoolBackward(dy: Tensor, argmax: Int32Array, inputShape: Shape, w: Window2d, opts: { out?: Tensor } = {}): Tensor {
    const out = output(opts.out, inputShape);
    native.cudaMaxPoolBackward({ dy: dev(dy, 'dy'), argmax, dx: dev(out, 'options.out'), ...geometry(inputShape, w) });
    return out;
  },

  dropout(x: Tensor, p: number, seed: number, offset: number, opts: { out?: Tensor } = {}): Tensor {
    const out = output(opts.out, x.shape);
    native.cudaDropout(dev(x, 'x'), dev(out, 'options.out'), x.size, p, seed, offset);
    return out;
  },

  maskedScale(x: Tensor, mask: Tensor, alpha: number, opts: { out?: Tensor } = {}): Tensor {
    const out = output(opts.out, x.shape);
    native.cudaMaskedScale(dev(x, 'x'), dev(mask, 'mask'), alpha, dev(out, 'options.out'), x.size);
    return out;
  },

  maskedAdd(g: Tensor, w: Tensor, mask: Tensor, lambda: number): Tensor {
    native.cudaMaskedAdd(dev(g, 'g'), dev(w, 'w'), dev(mask, 'mask'), lambda, g.size);
    return g;
  },

  nmMaskScale(w: Tensor, pattern: Pattern, alpha: number, opts: { mask?: Tensor; out?: Tensor } = {}) {
    const [rows, cols] = rowsCols(w);
    const mask = output(opts.mask, w.shape, 'options.mask', 'uint8');
    const out = output(opts.out, w.shape);
    if (out.deviceStorage() === w.deviceStorage()) fail('E_VALUE', 'options.out', out, 'a tensor other than w');
    native.cudaNmMaskScale({ w: dev(w, 'w'), rows, cols, n: pattern.n, m: pattern.m, alpha, mask: dev(mask, 'options.mask'), eff: dev(out, 'options.out') });
    return { mask, out };
  },

  nmTrainPass(w: Tensor, pattern: Pattern, opts: { mask: Tensor | null; buffers: TrainPassBuffers | null; select: boolean; dtype: DType }): TrainPassResult {
    const [rows, cols] = w.shape;
    const mask = opts.mask ?? output(undefined, w.shape, 'options.mask', 'uint8');
    const out = opts.buffers?.out ?? output(undefined, w.shape, 'options.buffers.out');
    // A 16-bit pass also writes w ⊙ mask in that dtype, from which the native side makes the 16-bit compressed weight.
    const out16 = opts.dtype === 'float32' ? null : opts.buffers?.out16 ?? output(undefined, w.shape, 'options.buffers.out16', opts.dtype);
    // The SAD goes to a zeroed device counter, read (a wait for the GPU) only if someone asks for it.
    const counter = opts.select && opts.mask ? native.cudaAlloc(8, true) : null;
    const handle = native.cudaNmTrainPass({
      w: dev(w, 'w'), rows, cols, n: pattern.n, m: pattern.m, mask: dev(mask, 'options.mask'), select: opts.select,
      eff: dev(out, 'options.buffers.out'), sad: counter, dtype: dtypeCode(opts.dtype), eff16: out16 && dev(out16, 'options.buffers.out16'),
    });
    // The previous step's compressed weight: its products are enqueued already, so freeing it is stream-ordered.
    opts.buffers?.sparse.dispose();
    const buffers = { out, sparse: new SparseTensor(w.shape, pattern, opts.dtype, { device: 'cuda', handle }), ...(out16 ? { out16 } : {}) };
    let sad = counter ? -1 : 0;
    return {
      mask, buffers,
      get sad(): number {
        if (sad < 0) {
          const v = new BigUint64Array(1);
          native.cudaDownload(counter!, v);
          counter!.dispose();
          sad = Number(v[0]);
        }
        return sad;
      },
    };
  },

  nmTransposedForm(w16: Tensor): SparseTensor {
    const [rows, cols] = w16.shape;
    const handle = native.cudaNmTransposedTrainForm(dev(w16, 'w16'), w16.dtypeCode, rows, cols);
    return new SparseTensor([cols, rows], { n: 2, m: 4 }, w16.dtype, { device: 'cuda', handle });
  },

  cast(x: Tensor, dtype: DType, opts: { out?: Tensor } = {}): Tensor {
    const out = output(opts.out, x.shape, 'options.out', dtype);
    native.cudaConvert(dev(x, 'x'), x.dtypeCode, dev(out, 'options.out'), dtypeCode(dtype), x.size);
    return out;
  },

  sgdStep(p: Tensor, g: Tensor, buf: Tensor | null,
    o: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean; first: boolean }): void {
    onCuda(g, 'grad');
    onCuda(buf, 'momentum buffer');
    native.cudaSgdStep({
      p: dev(p, 'param'), g: dev(g, 'grad'), buf: buf ? dev(buf, 'momentum buffer') : null, n: p.size, lr: o.lr, momentum: o.momentum,
      dampening: o.dampening, weightDecay: o.weightDecay, nesterov: o.nesterov, first: o.first,
    });
  },

  adamwStep(p: Tensor, g: Tensor, m: Tensor, v: Tensor,
    o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number }): void {
    for (const [t, a] of [[g, 'grad'], [m, 'exp_avg'], [v, 'exp_avg_sq']] as const) onCuda(t, a);
    native.cudaAdamwStep({
      p: dev(p, 'param'), g: dev(g, 'grad'), m: dev(m, 'exp_avg'), v: dev(v, 'exp_avg_sq'), n: p.size, lr: o.lr, beta1: o.beta1,
      beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, step: o.step,
    });
  },

  sumSquares(x: Tensor): number {
    return native.cudaSumSquares(dev(x, 'x'), x.size);
  },

  scaleInplace(x: Tensor, s: number): Tensor {
    native.cudaScaleInplace(dev(x, 'x'), s, x.size);
    return x;
  },

  attentionForward(qkv: Tensor, heads: number, opts: AttentionOptions & { out?: Tensor; probs?: Tensor }): AttentionSaved {
    const [batch, t, w] = qkv.shape, d = w / 3;
    const y = output(opts.out, [batch, t, d]);
    const probs = output(opts.probs, [batch, heads, t, t], 'options.probs');
    native.cudaAttentionForward({
      qkv: dev(qkv, 'qkv'), out: dev(y, 'options.out'), probs: dev(probs, 'options.probs'), batch, t, heads, headDim: d / heads,
      p: opts.p ?? 0, seed: opts.seed ?? 0, offset: opts.offset ?? 0,
    });
    return { y, probs };
  },

  attentionBackward(dy: Tensor, qkv: Tensor, probs: Tensor, heads: number, opts: AttentionOptions & { out?: Tensor }): Tensor {
    const [batch, t, w] = qkv.shape, d = w / 3;
    const out = output(opts.out, qkv.shape);
    native.cudaAttentionBackward({
      dout: dev(dy, 'dy'), qkv: dev(qkv, 'qkv'), probs: dev(probs, 'probs'), dqkv: dev(out, 'options.out'), batch, t, heads,
      headDim: d / heads, p: opts.p ?? 0, seed: opts.seed ?? 0, offset: opts.offset ?? 0,
    });
    return out;
  },
} satisfies DeviceTrainOps;
