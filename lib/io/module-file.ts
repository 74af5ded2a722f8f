/**
 * nmsparse networks (lib/nn) ↔ model files (lib/io/model-file.ts).
 *   archOf(net)                 the ArchSpec of a Sequential (recorded as `nmsparse.arch`)
 *   moduleState(net)            its parameters in PyTorch layout, N:M weights as they deploy (W ⊙ m), plus the
 *                               pattern and recipe of each sparse weight
 *   saveModule(file, net, o)    a deployable model file: what `nmsparse serve` and PyTorch load
 * The Trainer's checkpoint (lib/train/checkpoint.ts) writes the same file, and the training state to a resume file.
 */
import { patternString } from '../pattern.js';
import type { Tensor } from '../tensor.js';
import type { Module } from '../nn/module.js';
import { Conv2d, Dropout, Flatten, GELU, LayerNorm, Linear, MaxPool2d, ReLU, Reshape, Sequential } from '../nn/layers.js';
import { convFromGroupLayout, saveModel, type ArchSpec, type LayerSpec, type SaveModelOptions } from './model-file.js';

/** The architecture of `net`, or null when it is not a Sequential of layers the spec describes. */
export function archOf(net: Module): ArchSpec | null {
  if (!(net instanceof Sequential)) return null;
  const layers: LayerSpec[] = [];
  for (const [name, m] of net.namedChildren()) {
    const spec = layerOf(m);
    if (!spec) return null;
    layers.push({ name, ...spec } as LayerSpec);
  }
  return { type: 'Sequential', layers };
}

function layerOf(m: Module): LayerSpec | null {
  // Subclasses first: SparseLinear is a Linear, SparseConv2d a Conv2d.
  if (m instanceof Linear) return { type: 'Linear', in: m.inFeatures, out: m.outFeatures, bias: m.bias !== null };
  if (m instanceof Conv2d)
    return { type: 'Conv2d', in: m.inChannels, out: m.outChannels, kernel: [...m.window.kernel], stride: [...m.window.stride], padding: [...m.window.padding], bias: m.bias !== null };
  if (m instanceof MaxPool2d) return { type: 'MaxPool2d', kernel: [...m.window.kernel], stride: [...m.window.stride], padding: [...m.window.padding] };
  if (m instanceof LayerNorm) return { type: 'LayerNorm', dim: m.dim, eps: m.opts.eps ?? 1e-5, affine: m.gamma !== null };
  if (m instanceof Reshape) return { type: 'Reshape', shape: [...m.shape] };
  if (m instanceof Dropout) return { type: 'Dropout', p: m.p };
  if (m instanceof ReLU) return { type: 'ReLU' };
  if (m instanceof GELU) return { type: 'GELU' };
  if (m instanceof Flatten) return { type: 'Flatten' };
  return null;
}

/** A CPU tensor in PyTorch layout from one held in `layout` ('OHWI' Conv2d weights; others as they are). */
export function toTorchLayout(t: Tensor, layout: string | undefined): Tensor {
  const host = t.device === 'cpu' ? t : t.to('cpu');
  return layout === 'OHWI' ? convFromGroupLayout(host) : host;
}

export interface ModuleState {
  /** Every parameter by name, PyTorch layout; an N:M weight as it deploys (pruned). */
  tensors: Map<string, Tensor>;
  /** N:M-sparse weight name → pattern and recipe (not the layers trained with the dense recipe). */
  sparsity: Record<string, { pattern: string; recipe: string }>;
  /** Weights with N:M state (any recipe): the dense W the optimizer updates and the current mask (PyTorch layout). */
  training: Map<string, { dense: Tensor; mask: Tensor | null }>;
}

/** The state of `net` for a model file. */
export function moduleState(net: Module): ModuleState {
  const tensors = new Map<string, Tensor>();
  const sparsity: ModuleState['sparsity'] = {};
  const training: ModuleState['training'] = new Map();
  const visit = (m: Module, prefix: string) => {
    for (const [n, p] of m.ownParameters()) {
      const name = prefix + n;
      const s = m.sparse && m.sparse.param === p ? m.sparse : null;
      const shape = [...p.shape];
      // A layer trained with the dense recipe tracks a mask but deploys dense.
      if (s && s.recipe.name !== 'dense') {
        tensors.set(name, toTorchLayout(s.deployWeight().reshape(shape), p.layout));
        sparsity[name] = { pattern: patternString(s.pattern), recipe: s.recipe.name };
      } else {
        tensors.set(name, toTorchLayout(p.value, p.layout));
      }
      if (s) training.set(name, { dense: toTorchLayout(p.value, p.layout), mask: s.mask ? toTorchLayout(s.mask.reshape(shape), p.layout) : null });
    }
    for (const [n, c] of m.namedChildren()) visit(c, `${prefix}${n}.`);
  };
  visit(net, '');
  return { tensors, sparsity, training };
}

/**
 * Writes a deployable model file of `net`: PyTorch names and layouts, N:M weights pruned (or in the compressed nm
 * form with `compressed: true`), the architecture and the N:M metadata (and `input`, the standardisation its
 * inputs had in training). `nmsparse serve --model FILE` runs it.
 */
export async function saveModule(file: string, net: Module, opts: Pick<SaveModelOptions, 'compressed' | 'metadata' | 'input'> = {}): Promise<void> {
  const st = moduleState(net);
  const arch = archOf(net);
  await saveModel(file, st.tensors, { ...opts, sparsity: st.sparsity, ...(arch ? { arch } : {}) });
}
