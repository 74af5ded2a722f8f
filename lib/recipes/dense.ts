/** Dense training: the forward uses W and W receives g. A baseline, and the recipe of layers kept dense. */
import { Recipe, type Phase, type RecipeOptions } from './recipe.js';
import type { Pattern } from '../pattern.js';

export class Dense extends Recipe {
  readonly name = 'dense' as const;
  constructor(opts: RecipeOptions = {}) {
    super(opts);
  }
  override phase(): Phase { return 'dense'; }
  override isSparse(): boolean { return false; }
  protected override patternAt(): Pattern | null { return null; }
}
