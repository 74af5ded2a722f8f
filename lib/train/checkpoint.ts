/**
 * Training checkpoints: one safetensors file (lib/io/safetensors.ts) that is at once a deployable model (PyTorch
 * `load_file` + `load_state_dict(..., strict=False)`, `nmsparse serve --model`) and the trainer's state:
 *   <parameter>        every parameter by its path (`fc1.weight`), in PyTorch layout (Conv2d [out, in, kh, kw]);
 *                      an N:M-sparse weight as it deploys (W ⊙ m, pruned), so the file is a ready N:M model
 *   <weight>.dense     the dense W the optimizer updates (sparse layers only; what resuming needs)
 *   <weight>.mask      its current mask (uint8, PyTorch layout), when it has one
 *   __metadata__       format "pt", nmsparse.arch (the network), nmsparse.sparsity (pattern and recipe per sparse
 *                      weight, see lib/io/model-file.ts), nmsparse.train (the run's metadata, JSON)
 * Layers trained with the dense recipe are dense: their weight is W itself and they get no sparsity entry.
 */
import { makeWritableDir } from '../io/dir.js';
import path from 'node:path';
import { NmSparseError } from '../errors.js';
import { Tensor } from '../tensor.js';
import type { Module } from '../nn/module.js';
import { archOf, moduleState } from '../io/module-file.js';
import { convToGroupLayout, loadModelSync, saveModelSync } from '../io/model-file.js';
import { sparseWeights } from './trainer.js';

/** `<file>.safetensors` unless `file` already ends so (a trailing .json/.bin, the old format's, is replaced). */
export const checkpointPath = (file: string): string => (file.endsWith('.safetensors') ? file : `${file.replace(/\.(json|bin)$/, '')}.safetensors`);

/** Writes the checkpoint of `model` (see above). Returns the path written. */
export function saveCheckpoint(model: Module, file: string, meta: Record<string, unknown> = {}): { file: string } {
  const out = checkpointPath(file);
  const st = moduleState(model);
  const tensors = new Map(st.tensors);
  for (const [name, t] of st.training) {
    if (name in st.sparsity) tensors.set(`${name}.dense`, t.dense);
    if (t.mask) tensors.set(`${name}.mask`, t.mask);
  }
  const arch = archOf(model);
  makeWritableDir(path.dirname(path.resolve(out)), 'file');
  saveModelSync(out, tensors, { sparsity: st.sparsity, ...(arch ? { arch } : {}), metadata: { 'nmsparse.train': JSON.stringify(meta) } });
  return { file: out };
}

/**
 * Reads a checkpoint into `model` (same architecture): every parameter (the dense W of sparse layers), and the
 * masks. Throws E_IO naming the tensor when one is missing or of the wrong shape. Returns the run's metadata.
 */
export function loadCheckpoint(model: Module, file: string): Record<string, unknown> {
  const f = checkpointPath(file);
  const mf = loadModelSync(f);
  const read = (name: string, shape: readonly number[], layout: string | undefined, dtype: 'float32' | 'uint8'): Tensor => {
    const t = mf.tensors.get(name);
    if (!t) throw new NmSparseError('E_IO', `${f}: no tensor ${JSON.stringify(name)} for this model`);
    const held = layout === 'OHWI' && t.rank === 4 ? convToGroupLayout(t) : t;
    if (held.dtype !== dtype || held.rank !== shape.length || held.shape.some((d, i) => d !== shape[i]))
      throw new NmSparseError('E_IO', `${f}: tensor ${JSON.stringify(name)} is ${t.describe()}, this model needs a ${dtype} tensor of ${shape.length === 4 && layout === 'OHWI' ? `[${shape[0]}, ${shape[3]}, ${shape[1]}, ${shape[2]}] (PyTorch layout)` : `[${shape.join(', ')}]`}`);
    return held;
  };
  const sparse = new Map(sparseWeights(model).map(({ name, s }) => [name, s]));
  for (const [name, p] of model.namedParameters()) {
    const src = sparse.has(name) && mf.tensors.has(`${name}.dense`) ? `${name}.dense` : name;
    const t = read(src, p.shape, p.layout, 'float32');
    p.value = p.value.device === 'cpu' ? t : t.to(p.value.device);
  }
  for (const [name, s] of sparse) {
    if (!mf.tensors.has(`${name}.mask`)) continue;
    const m = read(`${name}.mask`, s.param.shape, s.param.layout, 'uint8').reshape([s.rows, s.cols]);
    s.mask = s.param.value.device === 'cpu' ? m : m.to(s.param.value.device);
    s.maskPattern = s.pattern;
  }
  const train = mf.metadata['nmsparse.train'];
  if (train === undefined) return {};
  try {
    return JSON.parse(train) as Record<string, unknown>;
  } catch (e) {
    throw new NmSparseError('E_IO', `${f}: metadata nmsparse.train is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}
