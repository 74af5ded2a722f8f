// The Witten–Bell character n-gram baseline, against a float64 reference written here from the formula.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ngramBaseline } from '../lib/bench/ngram.js';
import { CharNgram } from '../lib/data/ngram.js';
import { CharVocab } from '../lib/data/brown.js';
import { prng } from './helpers.js';

/** P(x | h) by the recursion of lib/data/ngram.ts, from counts taken by brute force over the training ids. */
function reference(train: number[], V: number, order: number, ctx: number[], x: number): number {
  const counts = (h: number[]) => {
    const after = new Map<number, number>();
    for (let i = h.length; i < train.length; i++) {
      let ok = true;
      for (let j = 0; j < h.length && ok; j++) ok = train[i - h.length + j] === h[j];
      if (ok) after.set(train[i], (after.get(train[i]) ?? 0) + 1);
    }
    return after;
  };
  let p = 1 / V;
  for (let len = 0; len < order && len <= ctx.length; len++) {
    const after = counts(ctx.slice(ctx.length - len));
    const c = [...after.values()].reduce((a, b) => a + b, 0);
    if (!c) break;
    p = ((after.get(x) ?? 0) + after.size * p) / (c + after.size);
  }
  return p;
}

const text = 'the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat by the log. ';

describe('CharNgram (interpolated Witten–Bell)', () => {
  const vocab = CharVocab.fromText(text + 'xyz');
  const train = vocab.encode(text.repeat(3));
  const V = vocab.size;

  it('matches the reference recursion and sums to 1 over the vocabulary', () => {
    const m = new CharNgram(train, { vocabSize: V, order: 5 });
    const r = prng(3);
    const contexts = ['', 'the', 'the c', ' on t', 'zzzz', 'og. a', 'xyz t'].map((s) => [...vocab.encode(s)]);
    for (let k = 0; k < 4; k++) contexts.push(Array.from({ length: 1 + Math.floor(r() * 6) }, () => Math.floor(r() * V)));
    for (const ctx of contexts) {
      const p = m.probs(ctx);
      expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      for (let x = 0; x < V; x++) {
        expect(p[x]).toBeGreaterThan(0);
        expect(p[x]).toBeCloseTo(reference([...train], V, 5, ctx, x), 12);
      }
    }
  });

  it('bits per character: the 5-gram beats the unigram on held-out text, and matches -log2 of its probabilities', () => {
    const held = vocab.encode('the dog sat on the mat by a log. the cat met a dog. ');
    const five = new CharNgram(train, { vocabSize: V, order: 5 }), one = new CharNgram(train, { vocabSize: V, order: 1 });
    const b5 = five.bitsPerChar(held), b1 = one.bitsPerChar(held);
    expect(b5).toBeLessThan(b1 - 1);
    let bits = 0;
    for (let i = 1; i < held.length; i++) bits -= Math.log2(reference([...train], V, 5, [...held.subarray(Math.max(0, i - 4), i)], held[i]));
    expect(b5).toBeCloseTo(bits / (held.length - 1), 10);
    expect(() => five.bitsPerChar(held, 5, 5)).toThrow(/from, to/);
    expect(() => new CharNgram(Int32Array.of(0, V), { vocabSize: V })).toThrow(/tokens\[1\]/);
  });
});

describe('bench ngram', () => {
  it('trains on the training documents and scores validation and test (a tiny corpus directory)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nms-ngram-'));
    const sentences = text.split('. ').filter(Boolean);
    const ids = Array.from({ length: 10 }, (_, k) => `ca${String(k + 1).padStart(2, '0')}`);
    writeFileSync(path.join(dir, 'cats.txt'), ids.map((id) => `${id} news`).join('\n'));
    ids.forEach((id, k) => writeFileSync(path.join(dir, id), `\n\t${sentences[k % sentences.length].split(' ').map((w) => `${w}/nn`).join(' ')} ./.\n`));
    const r = ngramBaseline(3, dir);
    expect(r.characters.validation).toBe(sentences[8 % sentences.length].length + 1);
    const vocab = CharVocab.fromText(ids.slice(0, 8).map((_, k) => sentences[k % sentences.length] + '.').join('\n\n'));
    expect(r.vocabSize).toBe(vocab.size);
    const m = new CharNgram(vocab.encode(ids.slice(0, 8).map((_, k) => sentences[k % sentences.length] + '.').join('\n\n')), { vocabSize: vocab.size, order: 3 });
    expect(r.validationBitsPerChar).toBeCloseTo(m.bitsPerChar(vocab.encode(sentences[8 % sentences.length] + '.')), 12);
    expect(r.testBitsPerChar).toBeCloseTo(m.bitsPerChar(vocab.encode(sentences[9 % sentences.length] + '.')), 12);
  });
});
