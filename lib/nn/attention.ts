/**
 * Causal multi-head self-attention (native/cpu/attention.{h,cc}, native/cuda/attention.cu): the op between a
 * Transformer block's fused c_attn projection and its c_proj. qkv [batch, t, 3·d] holds q, then k, then v (each
 * d = heads·headDim wide, head h at columns h·headDim…, as nanoGPT splits c_attn's output); the result is
 * [batch, t, d] with the heads concatenated. Scores are q·k/√headDim, future positions masked; dropout on the
 * attention probabilities (nanoGPT's attn_dropout) comes from the counter-based generator of lib/nn dropout, so
 * the backward pass recomputes it from (seed, offset) instead of storing a mask.
 */
import { native } from '../native.js';
import { fail } from '../errors.js';
import { deviceOp } from '../device.js';
import { checkOut, checkTensor, outputFor, type Shape, type Tensor } from '../tensor.js';

export interface AttentionOptions {
  /** Dropout probability on the attention probabilities (default 0). */
  p?: number;
  /** Dropout: probability (b, h, i, j) is kept iff u(seed, offset + ((b·heads + h)·t + i)·t + j) >= p. */
  seed?: number;
  offset?: number;
}

export interface AttentionSaved {
  /** [batch, t, d]: the heads' outputs, concatenated. */
  y: Tensor;
  /** [batch, heads, t, t]: the attention probabilities before dropout (0 above the diagonal), for the backward pass. */
  probs: Tensor;
}

function f32(t: unknown, arg: string): Tensor {
  const x = checkTensor(t, arg);
  if (x.dtype !== 'float32') fail('E_DTYPE', arg, x, 'a float32 tensor');
  return x;
}

/** [batch, t, heads, headDim] of a qkv tensor, checked. */
function geometry(qkv: Tensor, heads: number): [number, number, number, number] {
  if (!Number.isSafeInteger(heads) || heads < 1) fail('E_VALUE', 'heads', heads, 'an integer >= 1');
  if (qkv.rank !== 3 || qkv.shape[1] < 1 || qkv.shape[2] % (3 * heads) !== 0 || qkv.shape[2] === 0)
    fail('E_SHAPE', 'qkv', qkv, `a tensor [batch, t >= 1, 3·d] with d a multiple of heads = ${heads}`);
  const [batch, t, w] = qkv.shape;
  return [batch, t, heads, w / (3 * heads)];
}

function dropoutArgs(o: AttentionOptions): [number, number, number] {
  const p = o.p ?? 0, seed = o.seed ?? 0, offset = o.offset ?? 0;
  if (typeof p !== 'number' || !(p >= 0 && p < 1)) fail('E_VALUE', 'options.p', p, 'a probability in [0, 1)');
  if (!Number.isSafeInteger(seed)) fail('E_VALUE', 'options.seed', seed, 'an integer');
  if (!Number.isSafeInteger(offset) || offset < 0) fail('E_VALUE', 'options.offset', offset, 'an integer >= 0');
  return [p, seed, offset];
}

const sameShape = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Causal self-attention of qkv [batch, t, 3·d] with `heads` heads: y [batch, t, d] and the probabilities. */
export function attentionForward(qkv: Tensor, heads: number, opts: AttentionOptions & { out?: Tensor; probs?: Tensor } = {}): AttentionSaved {
  const x = f32(qkv, 'qkv');
  const [batch, t, h, hd] = geometry(x, heads);
  const [p, seed, offset] = dropoutArgs(opts);
  if (x.device !== 'cpu') return deviceOp(x.device, 'attentionForward')(x, heads, opts);
  const y = outputFor(checkOut(opts.out, [batch, t, h * hd], 'float32', 'cpu', 'options.out'), [batch, t, h * hd], 'float32');
  const probs = outputFor(checkOut(opts.probs, [batch, h, t, t], 'float32', 'cpu', 'options.probs'), [batch, h, t, t], 'float32');
  native.attentionForward({
    qkv: x.storage() as Float32Array, out: y.storage() as Float32Array, probs: probs.storage() as Float32Array,
    batch, t, heads: h, headDim: hd, p, seed, offset,
  });
  return { y, probs };
}

/**
 * dqkv [batch, t, 3·d] from dy [batch, t, d] and the forward's qkv and probabilities (and its dropout options).
 * Overwrites `probs` with the gradient of the scores, so it serves one backward pass.
 */
export function attentionBackward(dy: Tensor, qkv: Tensor, probs: Tensor, heads: number, opts: AttentionOptions & { out?: Tensor } = {}): Tensor {
  const x = f32(qkv, 'qkv'), d = f32(dy, 'dy'), pr = f32(probs, 'probs');
  const [batch, t, h, hd] = geometry(x, heads);
  if (!sameShape(d.shape, [batch, t, h * hd])) fail('E_SHAPE', 'dy', d, `a gradient [${batch}, ${t}, ${h * hd}] like the forward output`);
  if (!sameShape(pr.shape, [batch, h, t, t])) fail('E_SHAPE', 'probs', pr, `the forward's probabilities [${batch}, ${h}, ${t}, ${t}]`);
  for (const [v, a] of [[d, 'dy'], [pr, 'probs']] as const) if (v.device !== x.device) fail('E_DEVICE', a, v, `a tensor on '${x.device}' like qkv`);
  const [p, seed, offset] = dropoutArgs(opts);
  if (x.device !== 'cpu') return deviceOp(x.device, 'attentionBackward')(d, x, pr, heads, opts);
  const out = outputFor(checkOut(opts.out, x.shape, 'float32', 'cpu', 'options.out'), x.shape, 'float32');
  native.attentionBackward({
    dout: d.storage() as Float32Array, qkv: x.storage() as Float32Array, probs: pr.storage() as Float32Array,
    dqkv: out.storage() as Float32Array, batch, t, heads: h, headDim: hd, p, seed, offset,
  });
  return out;
}
