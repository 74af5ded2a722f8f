// Causal self-attention on 'cuda' (native/cuda/attention.cu) against the float64 reference of test/nn-helpers.ts
// through the public API: output and probabilities, dqkv against float64 central differences, with and without
// dropout on the probabilities; then the Transformer's other new ops (embedding, add, the token cross-entropy with
// ignored rows) and a whole tiny GPT on 'cuda' against the same model on the CPU.
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../lib/index.js';
import { attentionBackward, attentionForward } from '../../lib/nn/attention.js';
import * as E from '../../lib/nn/elementwise.js';
import { GPT } from '../../lib/nn/transformer.js';
import { SoftmaxCrossEntropy } from '../../lib/nn/loss.js';
import { dot, expectClose, expectGrad, f32, refAttention, values } from '../nn-helpers.js';
import { gpuUsable } from './gpu-helpers.js';

const host = (t: Tensor): Float32Array => (t.device === 'cpu' ? t : t.to('cpu')).storage() as Float32Array;
const ids = (v: number[], shape: number[]): Tensor => new Tensor(shape, 'float32', Float32Array.from(v));

describe.skipIf(!gpuUsable)('attention and the Transformer ops on cuda', () => {
  for (const [B, T, H, hd] of [[2, 5, 3, 4], [1, 33, 2, 16], [2, 130, 4, 8]])
    for (const p of [0, 0.25]) {
      it(`attention B ${B}, T ${T}, ${H} heads of ${hd}, dropout ${p}: float64 forward and differences`, () => {
        const d = H * hd, shape = [B, T, H, hd], drop = { p, seed: 5, offset: 64 };
        const qkv = values(B * T * 3 * d, 3 + T, 1.5);
        const x = f32(qkv, [B, T, 3 * d]).to('cuda');
        const r = attentionForward(x, H, drop);
        expect(r.y.device).toBe('cuda');
        const want = refAttention(qkv, shape, drop);
        expectClose('y', host(r.y), want.y, 1e-5);
        expectClose('probs', host(r.probs), want.probs, 1e-5);
        const g = values(B * T * d, 9);
        const dqkv = attentionBackward(f32(g, [B, T, d]).to('cuda'), x, r.probs, H, drop);
        const sample = T > 40 ? { rtol: 2e-3, atol: 2e-5 } : { rtol: 1e-3, atol: 1e-5 };
        expectGrad('dqkv', qkv, host(dqkv), () => dot(refAttention(qkv, shape, drop).y, g), { h: 1e-6, ...sample });
      });
    }

  it('embedding gather / scatter-add, add, and the cross-entropy ignoring -1 match the CPU', () => {
    const table = f32(values(7 * 40, 1), [7, 40]), tok = ids([3, 3, 0, 6, 3, 1], [2, 3]);
    const y = E.embeddingForward(tok.to('cuda'), table.to('cuda'));
    expectClose('rows', host(y), Float64Array.from(host(E.embeddingForward(tok, table))), 0);
    const dy = f32(values(6 * 40, 2), [2, 3, 40]);
    expectClose('dtable', host(E.embeddingBackward(dy.to('cuda'), tok.to('cuda'), 7)), Float64Array.from(host(E.embeddingBackward(dy, tok, 7))), 1e-6);
    const a = f32(values(50, 3), [5, 10]), b = f32(values(50, 4), [5, 10]);
    expectClose('add', host(E.add(a.to('cuda'), b.to('cuda'))), Float64Array.from(host(E.add(a, b))), 0);
    const z = f32(values(5 * 10, 5, 3), [5, 10]), labels = Int32Array.from([1, -1, 9, -1, 0]);
    const c = E.softmaxCrossEntropy(z, labels), gz = E.softmaxCrossEntropy(z.to('cuda'), labels);
    expect([gz.count, gz.correct]).toEqual([c.count, c.correct]);
    expect(gz.loss).toBeCloseTo(c.loss, 5);
    expectClose('dlogits', host(E.softmaxCrossEntropyBackward(gz.probs, labels)), Float64Array.from(host(E.softmaxCrossEntropyBackward(c.probs, labels))), 1e-6);
  });

  it('a tiny GPT on cuda: logits and every gradient match the CPU model', () => {
    const o = { vocabSize: 13, context: 16, layers: 2, dModel: 16, heads: 4, seed: 3 };
    const mc = new GPT(o), mg = new GPT(o).to('cuda');
    const tok = ids(Array.from({ length: 2 * 12 }, (_, i) => (i * 7) % 13), [2, 12]);
    const labels = Int32Array.from({ length: 24 }, (_, i) => (i % 6 === 5 ? -1 : (i * 5) % 13));
    const lc = new SoftmaxCrossEntropy(), lg = new SoftmaxCrossEntropy();
    const zc = mc.forward(tok), zg = mg.forward(tok.to('cuda'));
    expectClose('logits', host(zg), Float64Array.from(host(zc)), 1e-4);
    lc.forward(zc, labels);
    lg.forward(zg, labels);
    mc.backward(lc.backward());
    mg.backward(lg.backward());
    const gp = new Map(mg.namedParameters());
    for (const [n, p] of mc.namedParameters()) expectClose(n, host(gp.get(n)!.grad), Float64Array.from(host(p.grad)), 1e-4);
  });
});
