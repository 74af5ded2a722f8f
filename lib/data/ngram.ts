/**
 * A character n-gram model with interpolated Witten–Bell smoothing: the baseline a character language model has to
 * beat. With c(h, x) the count of x after context h, c(h) = Σ_x c(h, x) and t(h) the number of distinct x seen
 * after h,
 *   P(x | h) = (c(h, x) + t(h) · P(x | h')) / (c(h) + t(h))     when c(h) > 0,   P(x | h') otherwise,
 * where h' is h without its oldest symbol, down to the empty context, whose lower order is the uniform 1/V over the
 * vocabulary (so every symbol, the unknown one included, keeps some probability). Each level mixes a distribution
 * with a distribution, so P(· | h) sums to 1 over the vocabulary. Contexts are the `order` − 1 previous symbols
 * (fewer at the start of the stream).
 *
 * Counting sorts the n-gram keys of each order (a key is the n-gram's ids + 1 as digits in base V + 1, so n-grams
 * of different lengths never share a key and a context's n-grams are contiguous in sorted order).
 */
import { fail } from '../errors.js';

export class CharNgram {
  readonly order: number;
  readonly vocabSize: number;
  /** c(g) of every n-gram g of length 1…order seen, by key. */
  readonly #count = new Map<number, number>();
  /** c(h) and t(h) of every context h of length 0…order − 1 seen, by key (0: the empty context). */
  readonly #total = new Map<number, number>();
  readonly #types = new Map<number, number>();

  constructor(tokens: Int32Array, o: { vocabSize: number; order?: number }) {
    const order = o.order ?? 5, V = o.vocabSize;
    if (!Number.isSafeInteger(V) || V < 1) fail('E_VALUE', 'vocabSize', V, 'an integer >= 1');
    if (!Number.isSafeInteger(order) || order < 1 || (V + 1) ** order > Number.MAX_SAFE_INTEGER)
      fail('E_VALUE', 'order', order, `an integer >= 1 with (vocabSize + 1)^order < 2^53`);
    if (!(tokens instanceof Int32Array)) fail('E_TYPE', 'tokens', tokens, 'an Int32Array of ids');
    for (let i = 0; i < tokens.length; i++) if (tokens[i] < 0 || tokens[i] >= V) fail('E_VALUE', `tokens[${i}]`, tokens[i], `an id in [0, ${V})`);
    this.order = order;
    this.vocabSize = V;
    const B = V + 1, keys = new Float64Array(tokens.length);
    for (let n = 1; n <= order; n++) {
      // Every n-gram ending at i (n − 1 ≤ i), its key built from the (n − 1)-gram key ending at i − 1.
      let m = 0;
      for (let i = n - 1; i < tokens.length; i++) {
        let k = 0;
        for (let j = i - n + 1; j <= i; j++) k = k * B + tokens[j] + 1;
        keys[m++] = k;
      }
      const sorted = keys.subarray(0, m).sort();
      for (let a = 0; a < m;) {
        let b = a + 1;
        while (b < m && sorted[b] === sorted[a]) b++;
        const g = sorted[a], h = Math.floor(g / B);
        this.#count.set(g, b - a);
        this.#total.set(h, (this.#total.get(h) ?? 0) + (b - a));
        this.#types.set(h, (this.#types.get(h) ?? 0) + 1);
        a = b;
      }
    }
  }

  /** P(x | the last order − 1 ids of `context`) for every x of the vocabulary. */
  probs(context: ArrayLike<number>): Float64Array {
    const out = new Float64Array(this.vocabSize);
    for (let x = 0; x < this.vocabSize; x++) out[x] = this.#prob(context, context.length, x);
    return out;
  }

  /** P(x | context[..end] ), the context being its last order − 1 ids. */
  #prob(context: ArrayLike<number>, end: number, x: number): number {
    const B = this.vocabSize + 1;
    let p = 1 / this.vocabSize, h = 0;
    for (let len = 0; len < this.order && len <= end; len++) {
      if (len > 0) h = h + (context[end - len] + 1) * B ** (len - 1); // h grows by its oldest symbol: the leading digit
      const c = this.#total.get(h);
      if (!c) break; // an unseen context: its longer ones are unseen too
      const t = this.#types.get(h)!;
      p = ((this.#count.get(h * B + x + 1) ?? 0) + t * p) / (c + t);
    }
    return p;
  }

  /** Mean −log₂ P over the predictions of tokens[from…] (each from the order − 1 ids before it). */
  bitsPerChar(tokens: Int32Array, from = 1, to = tokens.length): number {
    if (!Number.isSafeInteger(from) || from < 0 || !Number.isSafeInteger(to) || to > tokens.length || to <= from)
      fail('E_VALUE', 'from, to', [from, to], `0 <= from < to <= ${tokens.length}`);
    let bits = 0;
    for (let i = from; i < to; i++) bits -= Math.log2(this.#prob(tokens, i, tokens[i]));
    return bits / (to - from);
  }
}
