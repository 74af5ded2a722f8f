/**
 * AdamW (decoupled weight decay), as torch.optim.AdamW:
 *   p ·= 1 − lr·wd;  m = β1·m + (1 − β1)·g;  v = β2·v + (1 − β2)·g²;
 *   p −= lr/(1 − β1^t) · m / (√v/√(1 − β2^t) + eps).
 * Weight decay applies to parameters with `decay` set (weights), not to biases and norm parameters.
 */
import { native } from '../native.js';
import { deviceOp } from '../device.js';
import { zeros, type Tensor } from '../tensor.js';
import type { Parameter } from '../nn/module.js';
import { Optimizer, checkRange } from './optimizer.js';

export interface AdamwOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

export class AdamW extends Optimizer {
  protected override readonly fusesGradTerms = true;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  #m: Tensor[];
  #v: Tensor[];

  constructor(params: Parameter[], opts: AdamwOptions) {
    super(params, opts?.lr);
    const [b1, b2] = opts.betas ?? [0.9, 0.999];
    this.betas = [checkRange(b1, 'betas[0]', 0, 1, true), checkRange(b2, 'betas[1]', 0, 1, true)];
    this.eps = checkRange(opts.eps ?? 1e-8, 'eps', 0, Infinity);
    this.weightDecay = checkRange(opts.weightDecay ?? 1e-2, 'weightDecay', 0, Infinity);
    this.#m = this.params.map((p) => zeros(p.shape, { device: p.value.device }));
    this.#v = this.params.map((p) => zeros(p.shape, { device: p.value.device }));
  }

  protected update(p: Parameter, i: number): void {
    const wd = p.decay ? this.weightDecay : 0;
    const [b1, b2] = this.betas;
    if (p.value.device !== 'cpu') {
      deviceOp(p.value.device, 'adamwStep')(p.value, p.grad, this.#m[i], this.#v[i], { lr: this.lr, beta1: b1, beta2: b2, eps: this.eps, weightDecay: wd, step: this.stepCount });
      return;
    }
    native.adamwStep({
      p: p.value.storage(), g: p.grad.storage(), m: this.#m[i].storage(), v: this.#v[i].storage(), n: p.size, lr: this.lr,
      beta1: b1, beta2: b2, eps: this.eps, weightDecay: wd, step: this.stepCount,
      ...(p.term ? { mask: p.term.mask.storage(), lambda: p.term.lambda } : {}),
    });
  }
}
