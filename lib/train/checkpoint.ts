/**
 * Training checkpoints, as PyTorch users keep them: the model in one file, what resuming needs in another.
 *   checkpoint.safetensors         the deployable model (lib/io/model-file.ts), the model only: PyTorch
 *                                  `load_state_dict(load_file(f))`, `nmsparse serve --model`
 *     <parameter>                  every parameter by its path (`fc1.weight`), in PyTorch layout (Conv2d
 *                                  [out, in, kh, kw]); an N:M-sparse weight as it deploys (W ⊙ m, pruned)
 *     __metadata__                 format "pt", nmsparse.arch (the network), nmsparse.sparsity (pattern and recipe
 *                                  per sparse weight), nmsparse.input (the input standardisation, when given),
 *                                  nmsparse.train (the run's metadata, JSON)
 *   checkpoint.resume.safetensors  the training state of the layers with N:M state (absent when none has any):
 *     <weight>.dense               the dense W the optimizer updates (sparse layers only)
 *     <weight>.mask                its current mask (uint8, PyTorch layout), when it has one
 * Layers trained with the dense recipe are dense: their weight is W itself and they get no sparsity entry.
 * loadCheckpoint reads both (and older single files that hold the `.dense`/`.mask` tensors beside the model).
 */
import { existsSync, rmSync } from 'node:fs';
import { makeWritableDir } from '../io/dir.js';
import path from 'node:path';
import { NmSparseError } from '../errors.js';
import { Tensor } from '../tensor.js';
import type { Module } from '../nn/module.js';
import { archOf, moduleState } from '../io/module-file.js';
import { convToGroupLayout, loadModelSync, saveModelSync, type InputTransform } from '../io/model-file.js';
import { loadSafetensorsSync, saveSafetensorsSync } from '../io/safetensors.js';
import { sparseWeights } from './trainer.js';

/** `<file>.safetensors` unless `file` already ends so (a trailing .json/.bin, the old format's, is replaced). */
export const checkpointPath = (file: string): string => (file.endsWith('.safetensors') ? file : `${file.replace(/\.(json|bin)$/, '')}.safetensors`);

/** The resume file beside checkpoint `file`: `<base>.resume.safetensors`. */
export const resumePath = (file: string): string => checkpointPath(file).replace(/\.safetensors$/, '.resume.safetensors');

/**
 * Writes the checkpoint of `model` (see above): the model file and, when a layer has N:M state, the resume file
 * (an older resume file is removed otherwise). `input`: the standardisation the training data had, recorded so
 * that whoever serves the model applies it. Returns the paths written.
 */
export function saveCheckpoint(model: Module, file: string, meta: Record<string, unknown> = {}, opts: { input?: InputTransform } = {}): { file: string; resume: string | null } {
  const out = checkpointPath(file);
  const st = moduleState(model);
  const training = new Map<string, Tensor>();
  for (const [name, t] of st.training) {
    if (name in st.sparsity) training.set(`${name}.dense`, t.dense);
    if (t.mask) training.set(`${name}.mask`, t.mask);
  }
  const arch = archOf(model);
  makeWritableDir(path.dirname(path.resolve(out)), 'file');
  const resume = resumePath(out);
  if (training.size > 0) saveSafetensorsSync(resume, training, { metadata: { format: 'pt' } });
  else rmSync(resume, { force: true });
  saveModelSync(out, st.tensors, { sparsity: st.sparsity, ...(arch ? { arch } : {}), ...(opts.input ? { input: opts.input } : {}), metadata: { 'nmsparse.train': JSON.stringify(meta) } });
  return { file: out, resume: training.size > 0 ? resume : null };
}

/**
 * Reads a checkpoint into `model` (same architecture): every parameter (the dense W of sparse layers, from the
 * resume file when there is one), and the masks. Throws E_IO naming the tensor when one is missing or of the wrong
 * shape. Returns the run's metadata.
 */
export function loadCheckpoint(model: Module, file: string): Record<string, unknown> {
  const f = checkpointPath(file);
  const mf = loadModelSync(f);
  const resume = resumePath(f);
  if (existsSync(resume)) for (const [name, t] of loadSafetensorsSync(resume).tensors) mf.tensors.set(name, t);
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
