/**
 * SGD with momentum, Nesterov momentum and (L2) weight decay, as torch.optim.SGD:
 *   d = g + wd·p;  buf = μ·buf + (1 − dampening)·d (buf = d on the first step);  d = nesterov ? d + μ·buf : buf;
 *   p −= lr·d.
 * Weight decay applies to parameters with `decay` set (weights), not to biases and norm parameters.
 */
import { native } from '../native.js';
import { fail } from '../errors.js';
import { deviceOp } from '../device.js';
import { zeros, type Tensor } from '../tensor.js';
import type { Parameter } from '../nn/module.js';
import { Optimizer, checkRange } from './optimizer.js';

export interface SgdOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export class SGD extends Optimizer {
  protected override readonly fusesGradTerms = true;
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  #buf: (Tensor | null)[];

  constructor(params: Parameter[], opts: SgdOptions) {
    super(params, opts?.lr);
    this.momentum = checkRange(opts.momentum ?? 0, 'momentum', 0, 1, true);
    this.dampening = checkRange(opts.dampening ?? 0, 'dampening', 0, 1);
    this.weightDecay = checkRange(opts.weightDecay ?? 0, 'weightDecay', 0, Infinity);
    this.nesterov = opts.nesterov ?? false;
    if (this.nesterov && (this.momentum === 0 || this.dampening !== 0))
      fail('E_VALUE', 'nesterov', true, 'momentum > 0 and dampening = 0 (as PyTorch)');
    this.#buf = this.params.map(() => null);
  }

  protected update(p: Parameter, i: number): void {
    const first = this.momentum !== 0 && this.#buf[i] === null;
    if (first) this.#buf[i] = zeros(p.shape, { device: p.value.device });
    const buf = this.#buf[i];
    const wd = p.decay ? this.weightDecay : 0;
    if (p.value.device !== 'cpu') {
      deviceOp(p.value.device, 'sgdStep')(p.value, p.grad, buf, { lr: this.lr, momentum: this.momentum, dampening: this.dampening, weightDecay: wd, nesterov: this.nesterov, first });
      return;
    }
    native.sgdStep({
      p: p.value.storage(), g: p.grad.storage(), buf: buf ? buf.storage() : null, n: p.size, lr: this.lr, momentum: this.momentum,
      dampening: this.dampening, weightDecay: wd, nesterov: this.nesterov, first,
      ...(p.term ? { mask: p.term.mask.storage(), lambda: p.term.lambda } : {}),
    });
  }
}
