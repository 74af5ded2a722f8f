/**
 * Text from a trained character GPT: the checkpoint of `nmsparse train --model transformer` (lib/train/run.ts)
 * holds the model's shape (metadata nmsparse.train → gpt) and its vocabulary (→ vocab); the model is rebuilt from
 * them with the deployed weights (an N:M layer's W ⊙ m, as it serves), and samples one character at a time from
 * softmax(logits / temperature) over the top-k, with a seeded generator: same seed, same text.
 */
import { NmSparseError, fail } from '../errors.js';
import { Rng } from '../random.js';
import { Tensor } from '../tensor.js';
import { CharVocab } from '../data/brown.js';
import { loadModelSync } from '../io/model-file.js';
import { gpt } from '../nn/models.js';
import type { GPT, GptOptions } from '../nn/transformer.js';
import { checkpointPath } from './checkpoint.js';

export interface LanguageModel {
  model: GPT;
  vocab: CharVocab;
}

/** The GPT and vocabulary of a transformer checkpoint; E_IO naming what is missing or does not fit. */
export function loadLanguageModel(file: string): LanguageModel {
  const f = checkpointPath(file);
  const mf = loadModelSync(f);
  let meta: { gpt?: GptOptions; vocab?: unknown };
  try {
    meta = JSON.parse(mf.metadata['nmsparse.train'] ?? 'null') ?? {};
  } catch (e) {
    throw new NmSparseError('E_IO', `${f}: metadata nmsparse.train is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (!meta.gpt || typeof meta.gpt !== 'object' || typeof meta.vocab !== 'string')
    throw new NmSparseError('E_IO', `${f}: not a language model checkpoint (its nmsparse.train metadata has no gpt and vocab: train one with nmsparse train --model transformer)`);
  const vocab = new CharVocab(meta.vocab);
  if (vocab.size !== meta.gpt.vocabSize) throw new NmSparseError('E_IO', `${f}: the vocabulary holds ${vocab.size} symbols, the model ${meta.gpt.vocabSize}`);
  const { vocabSize, context, layers, dModel, heads, tiedHead } = meta.gpt;
  const model = gpt({ vocabSize, context, layers, dModel, heads, tiedHead, seed: 0 });
  for (const [name, p] of model.namedParameters()) {
    const t = mf.tensors.get(name);
    if (!t) throw new NmSparseError('E_IO', `${f}: no tensor ${JSON.stringify(name)} for this model`);
    if (t.dtype !== 'float32' || t.rank !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]))
      throw new NmSparseError('E_IO', `${f}: tensor ${JSON.stringify(name)} is ${t.describe()}, the model needs a float32 tensor of [${p.shape.join(', ')}]`);
    p.value = t;
  }
  model.eval();
  return { model, vocab };
}

export interface GenerateOptions {
  /** Characters to add (default 200). */
  tokens?: number;
  /** Seed of the sampling (default 0). */
  seed?: number;
  /** Divides the logits (default 1; lower is more conservative). */
  temperature?: number;
  /** Sample among the k most likely characters only (default: all). */
  topK?: number;
}

/** `prompt` followed by `tokens` sampled characters (the prompt's unknown characters read as the unknown symbol). */
export function generate(lm: LanguageModel, prompt: string, o: GenerateOptions = {}): string {
  const { model, vocab } = lm;
  const n = o.tokens ?? 200, temperature = o.temperature ?? 1, topK = o.topK ?? vocab.size;
  if (!Number.isSafeInteger(n) || n < 0) fail('E_VALUE', 'tokens', n, 'an integer >= 0');
  if (!(temperature > 0) || !Number.isFinite(temperature)) fail('E_VALUE', 'temperature', temperature, 'a number > 0');
  if (!Number.isSafeInteger(topK) || topK < 1) fail('E_VALUE', 'topK', topK, 'an integer >= 1');
  if (typeof prompt !== 'string') fail('E_TYPE', 'prompt', prompt, 'a string');
  const rng = new Rng(o.seed ?? 0);
  const T = model.options.context, V = vocab.size;
  // An empty prompt starts where a paragraph starts.
  const ids = [...vocab.encode(prompt.length ? prompt : '\n')];
  const out: number[] = [];
  const p = new Float64Array(V);
  for (let i = 0; i < n; i++) {
    const window = ids.slice(-T);
    const logits = model.forward(new Tensor([1, window.length], 'float32', Float32Array.from(window))).storage() as Float32Array;
    const row = logits.subarray((window.length - 1) * V, window.length * V);
    // The top-k threshold: the k-th largest logit (ties above it all kept).
    const kth = topK >= V ? -Infinity : [...row].sort((a, b) => b - a)[topK - 1];
    let max = -Infinity;
    for (let v = 0; v < V; v++) if (row[v] >= kth && row[v] > max) max = row[v];
    let sum = 0;
    for (let v = 0; v < V; v++) sum += p[v] = row[v] >= kth ? Math.exp((row[v] - max) / temperature) : 0;
    let u = rng.next() * sum, next = V - 1;
    for (let v = 0; v < V; v++) {
      u -= p[v];
      if (u < 0 && p[v] > 0) { next = v; break; }
    }
    while (p[next] === 0) next--; // rounding left u >= 0: the last candidate
    ids.push(next);
    out.push(next);
  }
  return prompt + vocab.decode(out);
}
