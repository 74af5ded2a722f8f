/** The recipe family (DESIGN §6): one class per file, one interface (recipe.ts), made by name here. */
import { fail } from '../errors.js';
import { RECIPE_NAMES, type Recipe, type RecipeName } from './recipe.js';
import { Dense } from './dense.js';
import { STE, type SteOptions } from './ste.js';
import { SRSTE } from './srste.js';
import { ASP, type AspOptions } from './asp.js';
import { MaskDecay, type MaskDecayOptions } from './mask-decay.js';
import { StructureDecay, type StructureDecayOptions } from './structure-decay.js';

export { Recipe, SparseWeight, RECIPE_NAMES, MASK_KINDS, type MaskKind, type RecipeName, type RecipeOptions, type Phase } from './recipe.js';
export { Dense, STE, SRSTE, ASP, MaskDecay, StructureDecay };
export { SRSTE_LAMBDA } from './srste.js';
export { ALPHA_SCHEDULES, type AlphaSchedule, type MaskDecayOptions } from './mask-decay.js';
export { STRUCTURE_SCHEDULES, structureFrames, type StructureSchedule, type StructureDecayOptions } from './structure-decay.js';
export type { SteOptions, AspOptions };

export type AnyRecipeOptions = SteOptions & AspOptions & MaskDecayOptions & StructureDecayOptions;

/** A recipe by name. Options a recipe does not use are ignored. */
export function createRecipe(name: RecipeName | string, opts: AnyRecipeOptions = {}): Recipe {
  switch (name) {
    case 'dense': return new Dense(pick(opts, ['denseWarmup', 'denseFinetune']));
    case 'ste': return new STE(pick(opts, ['denseWarmup', 'denseFinetune', 'interval', 'sparseKernels', 'mask']));
    case 'srste': return new SRSTE(pick(opts, ['denseWarmup', 'denseFinetune', 'interval', 'lambda', 'sparseKernels', 'mask']));
    case 'asp': return new ASP(pick(opts, ['denseFraction', 'denseWarmup', 'denseFinetune', 'restartSchedule', 'sparseKernels', 'mask']));
    case 'mask-decay':
      return new MaskDecay(pick(opts, ['denseWarmup', 'denseFinetune', 'interval', 'alpha', 'gradient', 'coefficient', 'binaryFraction', 'sparseKernels', 'mask']));
    case 'structure-decay':
      return new StructureDecay(pick(opts, ['denseWarmup', 'denseFinetune', 'interval', 'schedule', 'frameSteps', 'gradient', 'sparseKernels', 'mask']) as StructureDecayOptions);
    default:
      return fail('E_VALUE', 'recipe', name, `one of ${RECIPE_NAMES.join(', ')}`);
  }
}

function pick<T extends object>(o: T, keys: (keyof AnyRecipeOptions)[]): T {
  const r: Record<string, unknown> = {};
  for (const k of keys) if ((o as Record<string, unknown>)[k] !== undefined) r[k] = (o as Record<string, unknown>)[k];
  return r as T;
}
