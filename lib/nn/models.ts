/**
 * The two MNIST networks of the reproduction. Every Linear/Conv2d is sparse with the given pattern and recipe
 * except the layers named in `dense` (by default the classifier, as SR-STE's official code keeps `fc` dense) and
 * layers that cannot hold the pattern (the first convolution, with one input channel, like ASP's auto-skip).
 */
import { fail } from '../errors.js';
import { parsePattern, type Pattern } from '../pattern.js';
import { randomSeed } from '../random.js';
import { Dense } from '../recipes/dense.js';
import type { Recipe } from '../recipes/recipe.js';
import { Conv2d, Flatten, Linear, MaxPool2d, ReLU, Reshape, Sequential, type SparsityOptions } from './layers.js';
import type { Module } from './module.js';
import { GPT, type GptOptions } from './transformer.js';

export interface ModelOptions {
  /** Target pattern of the sparse layers (default 2:4). */
  pattern?: Pattern | string;
  /** Recipe of the sparse layers (default: Dense, i.e. a dense network that still tracks its N:M masks). */
  recipe?: Recipe;
  /** Names of layers kept dense (default ['classifier']). */
  dense?: string[];
  /** Seed of the initial weights (layer i uses seed + i). */
  seed?: number;
}

export interface MlpOptions extends ModelOptions {
  /** Hidden widths (default [1024, 1024]). */
  hidden?: number[];
  inputs?: number;
  classes?: number;
}

export const MODEL_NAMES = ['mlp', 'cnn', 'transformer'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

function sparsityFor(name: string, o: ModelOptions, canHold = true): SparsityOptions | undefined {
  if ((o.dense ?? ['classifier']).includes(name) || !canHold) return undefined;
  return { pattern: parsePattern(o.pattern ?? '2:4'), recipe: o.recipe ?? new Dense() };
}

/** inputs → hidden… (ReLU) → classes. Layers: fc1, relu1, fc2, relu2, …, classifier. */
export function mlp(o: MlpOptions = {}): Sequential {
  const hidden = o.hidden ?? [1024, 1024];
  const seed = o.seed ?? randomSeed();
  const layers: [string, Module][] = [];
  let width = o.inputs ?? 784;
  hidden.forEach((h, i) => {
    layers.push([`fc${i + 1}`, new Linear(width, h, { seed: seed + i, sparsity: sparsityFor(`fc${i + 1}`, o) })]);
    layers.push([`relu${i + 1}`, new ReLU()]);
    width = h;
  });
  layers.push(['classifier', new Linear(width, o.classes ?? 10, { seed: seed + hidden.length, sparsity: sparsityFor('classifier', o) })]);
  return new Sequential(layers);
}

export interface CnnOptions extends ModelOptions {
  /** Output channels of the two 3×3 convolutions (default [16, 32]). */
  channels?: [number, number];
  /** Width of the hidden fully connected layer (default 128). */
  hidden?: number;
}

/**
 * [batch, 784] → 28×28×1 → conv1 3×3 (pad 1) → ReLU → max-pool 2 → conv2 3×3 (pad 1) → ReLU → max-pool 2
 * → flatten (7·7·c2) → fc1 → ReLU → classifier. conv1 (one input channel) is always dense.
 */
export function cnn(o: CnnOptions = {}): Sequential {
  const [c1, c2] = o.channels ?? [16, 32];
  const hidden = o.hidden ?? 128;
  const seed = o.seed ?? randomSeed();
  const m = parsePattern(o.pattern ?? '2:4').m;
  if (c1 % m !== 0) fail('E_SHAPE', 'channels[0]', c1, `a multiple of m = ${m} (conv2's N:M groups run along its ${c1} input channels)`);
  return new Sequential([
    ['image', new Reshape([28, 28, 1])],
    ['conv1', new Conv2d(1, c1, 3, { padding: 1, seed, sparsity: sparsityFor('conv1', o, false) })],
    ['relu1', new ReLU()],
    ['pool1', new MaxPool2d(2)],
    ['conv2', new Conv2d(c1, c2, 3, { padding: 1, seed: seed + 1, sparsity: sparsityFor('conv2', o) })],
    ['relu2', new ReLU()],
    ['pool2', new MaxPool2d(2)],
    ['flatten', new Flatten()],
    ['fc1', new Linear(7 * 7 * c2, hidden, { seed: seed + 2, sparsity: sparsityFor('fc1', o) })],
    ['relu3', new ReLU()],
    ['classifier', new Linear(hidden, 10, { seed: seed + 3, sparsity: sparsityFor('classifier', o) })],
  ]);
}

/**
 * A GPT language model (lib/nn/transformer.ts): every Linear inside the blocks sparse with the pattern and recipe
 * unless named in `dense` (a name matches a layer path or its tail: 'c_attn', 'mlp.c_proj',
 * 'transformer.h.0.attn.c_proj'; default none); embeddings, LayerNorms and the head stay dense.
 */
export function gpt(o: GptOptions): GPT {
  return new GPT(o);
}

/** A model by name; 'transformer' needs the GptOptions (vocabSize, context, layers, dModel, heads). */
export function buildModel(name: ModelName | string, o: ModelOptions | GptOptions = {}): Module {
  if (name === 'mlp') return mlp(o);
  if (name === 'cnn') return cnn(o);
  if (name === 'transformer') return gpt(o as GptOptions);
  return fail('E_VALUE', 'model', name, "'mlp', 'cnn' or 'transformer'");
}
