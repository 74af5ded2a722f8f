/**
 * Modules with explicit forward and backward passes (docs/design.md §7), in the style of Caffe/llm.c rather than an
 * autograd tape: forward(x) caches what backward needs; backward(dy) writes (overwrites, does not accumulate)
 * every parameter's gradient and returns dx.
 *
 * Buffers: the tensors that forward() and backward() return are owned by the module and reused by its next call
 * (the training loop allocates nothing per step). Clone a result to keep it across calls. A module instance may
 * appear only once in a network.
 */
import { fail } from '../errors.js';
import { zeros, type Shape, type Tensor } from '../tensor.js';
import type { Device } from '../device.js';
import type { DType } from '../dtype.js';
import type { SparseWeight } from '../recipes/recipe.js';
import { applyGradTerms } from '../optim/optimizer.js';

/** λ·(1 − mask)⊙value, mask uint8 (1 = kept) with as many elements as the parameter. */
export interface GradTerm {
  mask: Tensor;
  lambda: number;
}

export class Parameter {
  /**
   * The gradient of the loss with respect to `value`, written by the owning module's backward(); on the CPU without
   * a pending `term` (SR-STE's), which the optimizer adds: `optim.applyGradTerms(params)` makes it whole.
   */
  grad: Tensor;
  /**
   * A term of the gradient not yet added to `grad`: λ·(1 − mask)⊙value (SR-STE's, lib/recipes/recipe.ts), which
   * the optimizer's step reads on the fly instead of a separate pass. Whatever needs `grad` whole first calls
   * applyGradTerms (lib/optim/optimizer.ts). null when none.
   */
  term: GradTerm | null = null;
  constructor(
    public value: Tensor,
    /** Whether an optimizer's weight decay applies (weights: yes; biases and norm parameters: no). */
    public decay = true,
    /** Memory layout of `value` when it is not the PyTorch one (Conv2d weights: 'OHWI'). */
    public readonly layout?: string,
  ) {
    this.grad = zeros(value.shape, { device: value.device });
  }
  get shape(): readonly number[] { return this.value.shape; }
  get size(): number { return this.value.size; }
  /** Moves value and gradient (a pending term added to it first) to `device`. */
  to(device: Device): void {
    if (this.value.device === device) return;
    applyGradTerms([this]);
    this.value = this.value.to(device);
    this.grad = this.grad.to(device);
  }
}

const sameShape = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

export abstract class Module {
  training = true;
  /**
   * Whether backward() must compute dx. The trainer clears it on the network's first layer, whose input is data,
   * which saves that layer's dx product; a module that skips it returns null.
   */
  requiresInputGrad = true;
  #buffers = new Map<string, Tensor>();

  abstract forward(x: Tensor): Tensor;
  abstract backward(dy: Tensor): Tensor | null;

  /** Direct sub-modules with their names, in order. */
  namedChildren(): [string, Module][] { return []; }
  /** This module's own parameters with their names (not its children's). */
  ownParameters(): [string, Parameter][] { return []; }
  /** The N:M state when this layer's weight is sparse (SparseLinear, sparse Conv2d). */
  get sparse(): SparseWeight | null { return null; }
  /** Dense forward FLOPs of the last forward call (2·MACs of its products; 0 for layers without products). */
  lastForwardFlops = 0;
  /** One line describing the layer, e.g. `Linear(784 → 1024, 2:4 srste)`. */
  describe(): string { return this.constructor.name; }

  children(): Module[] { return this.namedChildren().map(([, m]) => m); }

  /** This module and every module below it, depth first. */
  modules(): Module[] {
    return [this, ...this.children().flatMap((c) => c.modules())];
  }

  /** Every parameter below this module, named by path (`fc1.weight`). */
  namedParameters(prefix = ''): [string, Parameter][] {
    const own = this.ownParameters().map(([n, p]) => [prefix + n, p] as [string, Parameter]);
    return [...own, ...this.namedChildren().flatMap(([n, c]) => c.namedParameters(`${prefix}${n}.`))];
  }

  parameters(): Parameter[] { return this.namedParameters().map(([, p]) => p); }

  train(on = true): this {
    for (const m of this.modules()) m.training = on;
    return this;
  }
  eval(): this { return this.train(false); }

  /** Moves every parameter to `device` and drops the cached buffers. */
  to(device: Device): this {
    for (const m of this.modules()) {
      for (const [, p] of m.ownParameters()) p.to(device);
      m.#buffers.clear();
    }
    return this;
  }

  /** A buffer owned by this module, reused while `shape` stays the same. */
  protected buffer(key: string, shape: Shape, like: Tensor, dtype: DType = 'float32'): Tensor {
    const b = this.#buffers.get(key);
    if (b && b.device === like.device && b.dtype === dtype && sameShape(b.shape, shape)) return b;
    const t = zeros(shape, { device: like.device, dtype });
    this.#buffers.set(key, t);
    return t;
  }

  /** Throws when backward() is called with no forward() to go back through. */
  protected saved<T>(v: T | null | undefined, what = 'forward()'): T {
    if (v === null || v === undefined) fail('E_VALUE', `${this.constructor.name}.backward`, v, `a preceding ${what} call`);
    return v;
  }
}
