/**
 * SR-STE (Zhou et al., ICLR 2021; official NM-sparsity code): the forward uses W ⊙ m, m recomputed from |W| every
 * step; the dense W receives g + λ_W·(1 − m)⊙W, which pulls the pruned weights toward 0 and stabilises the mask.
 * λ_W defaults to 2e-4 (the hard-coded `decay` of the official code). λ_W = 0 is STE exactly.
 */
import { STE, type SteOptions } from './ste.js';

export const SRSTE_LAMBDA = 2e-4;

export class SRSTE extends STE {
  override readonly name = 'srste' as const;
  constructor(opts: SteOptions = {}) {
    super({ ...opts, lambda: opts.lambda ?? SRSTE_LAMBDA });
  }
}
