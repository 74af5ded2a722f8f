/**
 * Sparse-structure decay (Kao et al. 2022; AQT `structure_decay`, and PGF's SDGF): the forward pattern starts
 * denser than the target and steps toward it through a list of frames that split the sparse phase equally
 * (or last `frameSteps` steps each). Masks are binary, recomputed every `interval` steps, and the dense W gets
 * the full gradient (STE; 'autodiff' gives g ⊙ m instead). Frames, for a target N:M:
 *   'kao'        M:M (dense), (M−1):M, then ⌈M/2^k⌉:M for k = 2, 3, … while above N, then N:M
 *                (AQT: n₁ = n₀ − 1, n_k = ⌈n₀/2^k⌉, starting from n₀ = M; 2:4 → 4:4, 3:4, 2:4)
 *   'stepwise'   (M−1):M, M/2:M, M/4:M, … while above N, then N:M (PGF SdGf-Stepwise; 1:8 → 7:8, 4:8, 2:8, 1:8)
 *   'geometric'  (8N):(8M), (4N):(4M), (2N):(2M), N:M (PGF SdGf-Geometric; 2:4 → 16:32, 8:16, 4:8, 2:4)
 * A frame this library cannot run on a layer (M > 32, or a last dimension not divisible by its M; e.g. 8:64, or
 * 16:32 on 784 inputs) is replaced on that layer by the next frame that it can run.
 *
 * 'aqt' is the same frame list run as Google's AQT code publishes it (aqt/jax_legacy/jax/sparsity.py, commit
 * 171812e; train_utils.py's update counter), not as this library's equal split:
 *   - one frame per mask update: at update k (sparse step k·interval) N = n_k with n₀ = M, n₁ = M − 1,
 *     n_k = ⌈M/2^k⌉ (k ≥ 2), never below the target N ("down to the final pattern"; AQT caps k at 8);
 *   - the mask is recomputed only at those updates and held in between (also on the final pattern);
 *   - the gradient is autodiff through W ⊙ m: pruned weights get zero gradient (gradient 'autodiff' by default).
 * AQT's sweep updates every 1000 of 10⁵ steps; here interval defaults to the sparse phase / 10, the clock of
 * mask decay's scaled default (AQT runs both decays on one sparsity_update_freq).
 */
import { Recipe, oneOf, positiveInt, samePattern, type RecipeOptions, type SparseWeight } from './recipe.js';
import { fail } from '../errors.js';
import { patternString, type Pattern } from '../pattern.js';
import type { Tensor } from '../tensor.js';

export type StructureSchedule = 'kao' | 'stepwise' | 'geometric' | 'aqt';
export const STRUCTURE_SCHEDULES: readonly StructureSchedule[] = ['kao', 'stepwise', 'geometric', 'aqt'];

export interface StructureDecayOptions extends RecipeOptions {
  /** Frame list (default 'kao'). */
  schedule?: StructureSchedule;
  /** Steps per frame (default: the sparse phase split equally among the frames; the last frame runs to the end). Not with 'aqt'. */
  frameSteps?: number;
  /** Gradient to the dense W: 'ste' (g, default) or 'autodiff' (g ⊙ m, the default of 'aqt'). */
  gradient?: 'ste' | 'autodiff';
}

/** The frames for a target pattern, densest first; n === m means a dense frame. */
export function structureFrames(schedule: StructureSchedule, target: Pattern): Pattern[] {
  const { n, m } = target;
  const frames: Pattern[] = [];
  const push = (f: Pattern) => { if (!frames.some((g) => g.n === f.n && g.m === f.m)) frames.push(f); };
  if (schedule === 'geometric') {
    for (let k = 3; k >= 0; k--) push({ n: n * 2 ** k, m: m * 2 ** k });
    return frames;
  }
  if (schedule === 'aqt') {
    for (let k = 0; ; k++) {
      const f = aqtPattern(target, k);
      push(f);
      if (f.n === n) return frames;
    }
  }
  if (schedule === 'kao') push({ n: m, m });
  if (m - 1 > n) push({ n: m - 1, m });
  for (let k = schedule === 'kao' ? 2 : 1; Math.ceil(m / 2 ** k) > n; k++) push({ n: Math.ceil(m / 2 ** k), m });
  push(target);
  return frames;
}

/** AQT's pattern after k mask updates: n₀ = M, n₁ = M − 1, n_k = ⌈M/2^k⌉, held at the target N once reached. */
export function aqtPattern(target: Pattern, k: number): Pattern {
  const { n, m } = target;
  const nk = k === 0 ? m : k === 1 ? m - 1 : Math.ceil(m / 2 ** Math.min(k, 8));
  return { n: Math.max(n, nk), m };
}

export class StructureDecay extends Recipe {
  readonly name = 'structure-decay' as const;
  readonly schedule: StructureSchedule;
  readonly frameSteps: number | undefined;
  readonly gradient: 'ste' | 'autodiff';
  #cache = new Map<string, Pattern[]>();
  readonly #interval: number | undefined;

  constructor(opts: StructureDecayOptions = {}) {
    super(opts);
    this.schedule = oneOf(opts.schedule ?? 'kao', STRUCTURE_SCHEDULES, 'schedule');
    this.frameSteps = opts.frameSteps === undefined ? undefined : positiveInt(opts.frameSteps, 'frameSteps');
    if (this.schedule === 'aqt' && this.frameSteps !== undefined)
      fail('E_VALUE', 'frameSteps', this.frameSteps, "undefined with schedule 'aqt' (its frames last one mask update interval)");
    this.gradient = oneOf(opts.gradient ?? (this.schedule === 'aqt' ? 'autodiff' : 'ste'), ['ste', 'autodiff'] as const, 'gradient');
    this.#interval = opts.interval === undefined ? undefined : positiveInt(opts.interval, 'interval');
  }

  /** Steps between mask updates: the interval option; for 'aqt' without one, the sparse phase / 10. */
  get refreshInterval(): number {
    if (this.#interval !== undefined || this.schedule !== 'aqt') return this.interval;
    if (!this.totalSteps) fail('E_VALUE', 'structure-decay', this.totalSteps, "a planned run for schedule 'aqt' without an interval: call recipe.plan(totalSteps) first");
    return Math.max(1, Math.floor(this.sparseSteps / 10));
  }

  /** Frame index at sparse step t for a list of `count` frames ('aqt': the number of mask updates before t). */
  frameIndex(t: number, count: number): number {
    if (t < 0) return 0;
    if (this.schedule === 'aqt') return Math.min(count - 1, Math.floor(t / this.refreshInterval));
    const per = this.frameSteps ?? (Number.isFinite(this.sparseSteps) ? this.sparseSteps / count : Infinity);
    return Math.min(count - 1, Math.floor(t / per));
  }

  /** The frames a weight runs (frames it cannot run replaced by the next one it can). */
  layerFrames(s: Pick<SparseWeight, 'pattern' | 'groupExtent' | 'supports'>): Pattern[] {
    const key = `${patternString(s.pattern)}/${s.groupExtent}`;
    let f = this.#cache.get(key);
    if (!f) {
      const all = structureFrames(this.schedule, s.pattern);
      const ok = (p: Pattern) => p.n === p.m || s.supports(p);
      f = all.map((p, i) => (ok(p) ? p : all.slice(i + 1).find(ok) ?? s.pattern));
      this.#cache.set(key, f);
    }
    return f;
  }

  /** The forward pattern of a weight at sparse step t (n === m: dense). */
  patternAtStep(s: Pick<SparseWeight, 'pattern' | 'groupExtent' | 'supports'>, t: number): Pattern {
    const frames = this.layerFrames(s);
    return frames[this.frameIndex(t, frames.length)];
  }

  protected override patternAt(s: SparseWeight): Pattern | null {
    if (!this.isSparse()) return null;
    const p = this.patternAtStep(s, this.sparseStep);
    return p.n === p.m ? null : p;
  }
  protected override refreshDue(s: SparseWeight, p: Pattern): boolean {
    if (this.schedule !== 'aqt') return super.refreshDue(s, p);
    // Updates at sparse steps k·interval only: a held mask is kept to the next one, the final pattern's too.
    return s.mask === null || !samePattern(s.maskPattern, p) || this.sparseStep - s.lastRefresh >= this.refreshInterval;
  }
  override weightGrad(s: SparseWeight, g: Tensor): void {
    if (this.gradient === 'autodiff') this.scaleByMask(s, g);
  }
  override describe(): Record<string, unknown> {
    // 'aqt' unplanned without an interval: undefined (scaled to the run once planned).
    const interval = this.schedule !== 'aqt' ? this.interval : this.totalSteps ? this.refreshInterval : this.#interval;
    return { ...super.describe(), interval, schedule: this.schedule, frameSteps: this.frameSteps, gradient: this.gradient };
  }
}
