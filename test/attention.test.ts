// Causal self-attention (lib/nn/attention.ts → native/cpu/attention.cc) against a float64 loop: forward output and
// probabilities, and dqkv against central differences of the float64 reference, with and without dropout on the
// probabilities, for ragged lengths, several heads and batches, on every ISA this machine runs.
import { describe, expect, it } from 'vitest';
import { Tensor } from '../lib/index.js';
import { attentionBackward, attentionForward } from '../lib/nn/attention.js';
import { native } from '../lib/native.js';
import { ISAS, poison } from './helpers.js';
import { arr, dot, expectClose, expectGrad, f32, refAttention, values } from './nn-helpers.js';

const cases = [
  { B: 2, T: 5, H: 3, hd: 4 },
  { B: 1, T: 13, H: 2, hd: 8 },
  { B: 3, T: 1, H: 1, hd: 3 },
  { B: 2, T: 19, H: 4, hd: 5 },
];

describe('attentionForward / attentionBackward', () => {
  for (const isa of ISAS)
    for (const { B, T, H, hd } of cases)
      for (const drop of [{ p: 0, seed: 0, offset: 0 }, { p: 0.3, seed: 77, offset: 1000 }]) {
        it(`${isa}: B ${B}, T ${T}, ${H} heads of ${hd}, dropout ${drop.p}`, () => {
          native.cpuIsa(isa);
          try {
            const d = H * hd, shape = [B, T, H, hd];
            const qkv = values(B * T * 3 * d, 11 + T * 7 + H, 1.5);
            const opts = { p: drop.p, seed: drop.seed, offset: drop.offset };
            const out = poison(new Tensor([B, T, d], 'float32', new Float32Array(B * T * d)));
            const probs = poison(new Tensor([B, H, T, T], 'float32', new Float32Array(B * H * T * T)));
            const x = f32(qkv, [B, T, 3 * d]);
            const r = attentionForward(x, H, { ...opts, out, probs });
            expect(r.y).toBe(out);
            const want = refAttention(qkv, shape, drop);
            expectClose('y', arr(r.y), want.y, 2e-6);
            expectClose('probs', arr(r.probs), want.probs, 2e-6);
            const g = values(B * T * d, 5 + T);
            const dqkv = poison(new Tensor([B, T, 3 * d], 'float32', new Float32Array(B * T * 3 * d)));
            attentionBackward(f32(g, [B, T, d]), x, r.probs, H, { ...opts, out: dqkv });
            expectGrad('dqkv', qkv, arr(dqkv), () => dot(refAttention(qkv, shape, drop).y, g), { h: 1e-6, rtol: 1e-3, atol: 1e-5 });
          } finally {
            native.cpuIsa('auto');
          }
        });
      }

  it('dropout: the same (seed, offset) gives the same output; another offset another mask', () => {
    const [B, T, H, hd] = [1, 8, 2, 4];
    const x = f32(values(B * T * 3 * H * hd, 3), [B, T, 3 * H * hd]);
    const a = arr(attentionForward(x, H, { p: 0.5, seed: 9, offset: 0 }).y).slice();
    expect(arr(attentionForward(x, H, { p: 0.5, seed: 9, offset: 0 }).y)).toEqual(a);
    expect(arr(attentionForward(x, H, { p: 0.5, seed: 9, offset: 64 }).y)).not.toEqual(a);
  });

  it('rejects bad shapes, heads and dropout options with typed errors', () => {
    const x = f32(values(2 * 3 * 12, 1), [2, 3, 12]);
    expect(() => attentionForward(x, 3, {})).toThrowError(expect.objectContaining({ code: 'E_SHAPE' })); // 12 = 3·d: d = 4 not a multiple of 3
    expect(() => attentionForward(f32(values(36, 1), [3, 12]), 2)).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => attentionForward(x, 0)).toThrowError(expect.objectContaining({ code: 'E_VALUE' }));
    expect(() => attentionForward(x, 2, { p: 1 })).toThrowError(expect.objectContaining({ code: 'E_VALUE' }));
    const r = attentionForward(x, 2);
    expect(() => attentionBackward(f32(values(2 * 3 * 2, 1), [2, 3, 2]), x, r.probs, 2)).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    expect(() => attentionBackward(f32(values(2 * 3 * 4, 1), [2, 3, 4]), x, x, 2)).toThrowError(expect.objectContaining({ code: 'E_SHAPE' }));
    const small = new Float32Array(4);
    expect(() => native.attentionForward({ qkv: small, out: small.slice(), probs: small.slice(), batch: 2, t: 3, heads: 2, headDim: 2, p: 0, seed: 0, offset: 0 }))
      .toThrowError(expect.objectContaining({ code: 'E_SHAPE', message: expect.stringMatching(/^attentionForward: options\.qkv: /) }));
  });
});
