/**
 * Optimizer base. Updates run in the native core (native/cpu/optim.cc, or the device's op of the same name for
 * tensors on a GPU), one call per parameter, never in JS loops.
 */
import { native } from '../native.js';
import { fail } from '../errors.js';
import { deviceOp } from '../device.js';
import { maskedAdd } from '../nn/elementwise.js';
import type { Parameter } from '../nn/module.js';

export abstract class Optimizer {
  readonly params: Parameter[];
  /** The learning rate of the next step (a schedule sets it before each step). */
  lr: number;
  /** Steps taken so far. */
  stepCount = 0;

  constructor(params: Parameter[], lr: number) {
    if (!Array.isArray(params) || params.length === 0) fail('E_VALUE', 'params', params, 'a non-empty array of Parameters');
    if (new Set(params).size !== params.length) fail('E_VALUE', 'params', params, 'distinct Parameters');
    this.params = params;
    this.lr = checkLr(lr);
  }

  /**
   * Whether update() reads a parameter's pending term itself (SGD and AdamW pass it to their native step); an
   * optimizer that does not (a user's subclass) gets the terms added to the gradients before its updates.
   */
  protected readonly fusesGradTerms: boolean = false;

  /** Applies one update to every parameter from its current gradient. */
  step(): void {
    checkLr(this.lr, 'optimizer.lr');
    this.stepCount++;
    if (!this.fusesGradTerms) applyGradTerms(this.params);
    for (let i = 0; i < this.params.length; i++) {
      this.update(this.params[i], i);
      this.params[i].term = null;
    }
  }
  /**
   * One parameter's update from grad plus, with fusesGradTerms, its pending term (p.term, read on the fly), which
   * step() then clears.
   */
  protected abstract update(p: Parameter, index: number): void;

  /** Scales the gradients so that their global L2 norm is at most maxNorm; returns the norm before clipping. */
  clipGradNorm(maxNorm: number): number {
    if (!(maxNorm > 0)) fail('E_VALUE', 'maxNorm', maxNorm, 'a number > 0');
    applyGradTerms(this.params);  // the norm is that of the whole gradient
    const norm = Math.sqrt(gradSumSquares(this.params));
    if (norm > maxNorm) scaleGrads(this.params, maxNorm / (norm + 1e-6));
    return norm;
  }
}

/** Adds each parameter's pending term (Parameter.term) to its gradient and clears it: `grad` is then whole. */
export function applyGradTerms(params: Parameter[]): void {
  if (!Array.isArray(params) || !params.every((p) => p !== null && typeof p === 'object' && 'term' in p && 'grad' in p))
    fail('E_TYPE', 'params', params, 'an array of Parameters');
  for (const p of params) {
    if (!p.term) continue;
    const { mask, lambda } = p.term;
    maskedAdd(p.grad.reshape([...mask.shape]), p.value.reshape([...mask.shape]), mask, lambda);
    p.term = null;
  }
}

/** Σ g² over the gradients of `params`, pending terms excluded (float64; NaN or Infinity when one is not finite). */
export function gradSumSquares(params: Parameter[]): number {
  let ss = 0;
  for (const p of params) {
    const g = p.grad;
    ss += g.device === 'cpu' ? (native.sumSquares(g.storage(), g.size) as number) : deviceOp(g.device, 'sumSquares')(g);
  }
  return ss;
}

/**
 * g *= s for the whole gradient of every parameter. A pending term is scaled with it when s is a power of two (s·(g +
 * t) = s·g + s·t exactly, barring subnormals), else added first.
 */
export function scaleGrads(params: Parameter[], s: number): void {
  const exact = powerOfTwo(s);
  for (const p of params) {
    if (p.term) {
      if (exact) p.term.lambda *= s;
      else applyGradTerms([p]);
    }
    if (p.grad.device === 'cpu') native.scaleInplace(p.grad.storage(), s, p.grad.size);
    else deviceOp(p.grad.device, 'scaleInplace')(p.grad, s);
  }
}

export const powerOfTwo = (s: number): boolean => s > 0 && Number.isFinite(s) && 2 ** Math.round(Math.log2(s)) === s;

export function checkLr(lr: unknown, arg = 'lr'): number {
  if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) fail('E_VALUE', arg, lr, 'a finite number >= 0');
  return lr;
}

export function checkRange(v: unknown, arg: string, lo: number, hi: number, hiOpen = false): number {
  if (typeof v !== 'number' || !(v >= lo && (hiOpen ? v < hi : v <= hi))) fail('E_VALUE', arg, v, `a number in [${lo}, ${hi}${hiOpen ? ')' : ']'}`);
  return v;
}
