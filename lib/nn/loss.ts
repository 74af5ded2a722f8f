/** Softmax cross-entropy over class logits, mean over the labelled rows (optional label smoothing; label −1: ignored). */
import { fail } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { softmaxCrossEntropy, softmaxCrossEntropyBackward } from './elementwise.js';
import { setLossScale } from './amp.js';

export class SoftmaxCrossEntropy {
  #saved: { probs: Tensor; labels: Int32Array } | null = null;
  #probs: Tensor | null = null;
  #grad: Tensor | null = null;
  constructor(readonly opts: { labelSmoothing?: number } = {}) {}

  /**
   * Mean loss over the labelled rows, the number of them whose argmax is the label, and how many there are (rows
   * labelled −1 are ignored). Keeps the probabilities for backward().
   */
  forward(logits: Tensor, labels: Int32Array): { loss: number; correct: number; count: number } {
    const probs = this.#reuse(this.#probs, logits);
    const r = softmaxCrossEntropy(logits, labels, { labelSmoothing: this.opts.labelSmoothing, probs });
    this.#probs = r.probs;
    this.#saved = { probs: r.probs, labels };
    return { loss: r.loss, correct: r.correct, count: r.count };
  }

  /**
   * d(mean loss)/d logits (a buffer owned by this object, reused by the next call), times `scale` (default 1; the
   * loss scale of float16 training, GradScaler), published as currentLossScale() for the backward that follows.
   */
  backward(scale = 1): Tensor {
    const s = this.#saved;
    if (!s) fail('E_VALUE', 'SoftmaxCrossEntropy.backward', s, 'a preceding forward() call');
    if (typeof scale !== 'number' || !(scale > 0) || !Number.isFinite(scale)) fail('E_VALUE', 'scale', scale, 'a finite number > 0');
    setLossScale(scale);
    this.#grad = softmaxCrossEntropyBackward(s.probs, s.labels, { labelSmoothing: this.opts.labelSmoothing, scale, out: this.#reuse(this.#grad, s.probs) });
    return this.#grad;
  }

  #reuse(t: Tensor | null, like: Tensor): Tensor | undefined {
    return t && t.device === like.device && t.shape.length === like.shape.length && t.shape.every((d, i) => d === like.shape[i]) ? t : undefined;
  }
}
