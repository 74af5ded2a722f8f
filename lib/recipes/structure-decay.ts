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
 */
import { Recipe, oneOf, positiveInt, type RecipeOptions, type SparseWeight } from './recipe.js';
import { patternString, type Pattern } from '../pattern.js';
import type { Tensor } from '../tensor.js';

export type StructureSchedule = 'kao' | 'stepwise' | 'geometric';
export const STRUCTURE_SCHEDULES: readonly StructureSchedule[] = ['kao', 'stepwise', 'geometric'];

export interface StructureDecayOptions extends RecipeOptions {
  /** Frame list (default 'kao'). */
  schedule?: StructureSchedule;
  /** Steps per frame (default: the sparse phase split equally among the frames; the last frame runs to the end). */
  frameSteps?: number;
  /** Gradient to the dense W: 'ste' (g, default) or 'autodiff' (g ⊙ m). */
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
  if (schedule === 'kao') push({ n: m, m });
  if (m - 1 > n) push({ n: m - 1, m });
  for (let k = schedule === 'kao' ? 2 : 1; Math.ceil(m / 2 ** k) > n; k++) push({ n: Math.ceil(m / 2 ** k), m });
  push(target);
  return frames;
}

export class StructureDecay extends Recipe {
  readonly name = 'structure-decay' as const;
  readonly schedule: StructureSchedule;
  readonly frameSteps: number | undefined;
  readonly gradient: 'ste' | 'autodiff';
  #cache = new Map<string, Pattern[]>();

  constructor(opts: StructureDecayOptions = {}) {
    super(opts);
    this.schedule = oneOf(opts.schedule ?? 'kao', STRUCTURE_SCHEDULES, 'schedule');
    this.frameSteps = opts.frameSteps === undefined ? undefined : positiveInt(opts.frameSteps, 'frameSteps');
    this.gradient = oneOf(opts.gradient ?? 'ste', ['ste', 'autodiff'] as const, 'gradient');
  }

  /** Frame index at sparse step t for a list of `count` frames. */
  frameIndex(t: number, count: number): number {
    if (t < 0) return 0;
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
  override weightGrad(s: SparseWeight, g: Tensor): void {
    if (this.gradient === 'autodiff') this.scaleByMask(s, g);
  }
  override describe(): Record<string, unknown> {
    return { ...super.describe(), schedule: this.schedule, frameSteps: this.frameSteps, gradient: this.gradient };
  }
}
