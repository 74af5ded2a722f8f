/**
 * Model checkpoints on top of safetensors: PyTorch names and layouts, plus nmsparse's metadata.
 *
 * Tensors: PyTorch state_dict names and layouts (a parameter by its module path: `fc1.weight` [out, in] for
 * nmsparse's named layers, `0.weight` or `layers.0.weight` for an nn.Sequential; `fc1.bias` [out]; a Conv2d weight
 * [co, ci, kh, kw]), so `model.load_state_dict(safetensors.torch.load_file(f))` works on a dense file. A model
 * file holds the model only (training state goes to a separate resume file: lib/train/checkpoint.ts).
 *
 * `__metadata__` (all values are strings, as the format requires):
 *   format              "pt" (what transformers and safetensors.torch look for)
 *   nmsparse.format     "1", the version of this convention
 *   nmsparse.arch       JSON architecture (see ArchSpec) when the writer knows it
 *   nmsparse.sparsity   JSON {weight name: {pattern: "2:4", recipe?: "sr-ste", form: "dense" | "nm", shape: [...]}}
 *                       one entry per N:M-sparse weight; dense weights have none
 *   nmsparse.input      JSON {mean, std} when the model was trained on standardised inputs: every input value
 *                       becomes (x − mean) / std before the first layer. Readers apply it (InferenceModel, `nmsparse
 *                       serve`), so clients send raw values (MNIST pixels in [0, 1]) as the training data came.
 *
 * Forms of an N:M-sparse weight `W` named `name`:
 *   dense (default)     `name` holds the pruned dense tensor (zeros included): any reader can load it.
 *   nm (compressed)     `name.nm_values` holds the kept values [rows..., cols·N/M] in W's dtype, and
 *                       `name.nm_positions` (U8) [rows..., bytes] the packed positions: log2(M) bits per kept value,
 *                       little-endian bit stream, each row starting on a byte (native/core/nm_format.h); `name`
 *                       itself is absent. A 2:4 float32 weight takes 0.53× its dense bytes (values ½, positions 1 bit per dense element = ¹⁄₃₂).
 *                       N:M groups run along the last dimension; for a rank-4 Conv2d weight [co, ci, kh, kw] they run
 *                       along ci, so the nm form holds the permuted [co, kh, kw, ci] tensor (entry `layout`:
 *                       "co,kh,kw,ci"). test/fixtures/make_torch_fixture.py has a 20-line decompressor in torch.
 */
import { NmSparseError, describe } from '../errors.js';
import { parsePattern, patternString, type Pattern } from '../pattern.js';
import { check, type PatternArg } from '../mask.js';
import { CHECKED, SparseTensor, badPositions, compress } from '../compress.js';
import { Tensor } from '../tensor.js';
import { loadSafetensors, loadSafetensorsSync, saveSafetensors, saveSafetensorsSync, type SafetensorsContents, type TensorMap } from './safetensors.js';

export const NM_VALUES = '.nm_values';
export const NM_POSITIONS = '.nm_positions';
const CONV_LAYOUT = 'co,kh,kw,ci';

/**
 * One layer of a feed-forward network. Its tensors are `<prefix>.<name>.weight` / `.bias`, where `name` defaults to
 * the layer's index (PyTorch's nn.Sequential) and the prefix may be empty (nmsparse's Sequential with named
 * layers: `fc1.weight`).
 */
export type LayerSpec = { name?: string } & (
  | { type: 'Linear'; in: number; out: number; bias?: boolean }
  | { type: 'Conv2d'; in: number; out: number; kernel: [number, number]; stride: [number, number]; padding: [number, number]; bias?: boolean }
  | { type: 'MaxPool2d'; kernel: [number, number]; stride: [number, number]; padding: [number, number] }
  | { type: 'LayerNorm'; dim: number; eps?: number; affine?: boolean }
  | { type: 'Reshape'; shape: number[] }
  | { type: 'Dropout'; p: number }
  | { type: 'ReLU' }
  | { type: 'GELU' }
  | { type: 'Flatten' }
);

/**
 * Architecture recorded in `nmsparse.arch`: layers applied in order to rows [batch, features]. Images are NHWC
 * (nmsparse's convention: Reshape [28, 28, 1] turns MNIST rows into images), so the Flatten after a convolution
 * orders features (h, w, c), unlike PyTorch's NCHW (c, h, w); Conv2d weights are still stored [co, ci, kh, kw].
 */
export interface ArchSpec {
  type: 'Sequential';
  /** Name prefix of the layers' tensors: 'layers' for PyTorch's `self.layers = nn.Sequential(...)`; default ''. */
  prefix?: string;
  layers: LayerSpec[];
}

/** The name of a parameter (`weight`, `bias`) of layer `i` of `arch`. */
export function paramName(arch: ArchSpec, i: number, param: string): string {
  const layer = arch.layers[i];
  return [arch.prefix ?? '', layer.name ?? String(i), param].filter((s) => s !== '').join('.');
}

export interface LayerSparsity {
  pattern: string;
  /** The training recipe that produced it (sr-ste, ste, asp, …), informative. */
  recipe?: string;
  form: 'dense' | 'nm';
  /** Shape of the dense weight (PyTorch layout). */
  shape: number[];
  /** Only for rank-4 weights in the nm form: the layout of the compressed tensor. */
  layout?: string;
}

/** The input standardisation a model was trained with (`nmsparse.input`): x → (x − mean) / std. */
export interface InputTransform {
  mean: number;
  std: number;
}

export interface SaveModelOptions {
  arch?: ArchSpec;
  /** The input standardisation the model was trained with, recorded as `nmsparse.input`. */
  input?: InputTransform;
  /** Weight name → its pattern (and recipe). Each such weight must already be N:M sparse (nm.prune it first). */
  sparsity?: Record<string, PatternArg | { pattern: PatternArg; recipe?: string }>;
  /** Store the N:M weights in the compressed nm form (values + packed positions). Default false: dense. */
  compressed?: boolean;
  /** Extra metadata (string values). */
  metadata?: Record<string, string>;
}

export interface ModelFile {
  /**
   * Every tensor in PyTorch form: nm-form weights are decompressed to their dense pruned tensor, unless loaded
   * with `decompress: false` (then they are only in `compressed`).
   */
  tensors: Map<string, Tensor>;
  /** N:M weights read in the nm form, kept compressed (no need to compress again). */
  compressed: Map<string, SparseTensor>;
  sparsity: Record<string, LayerSparsity>;
  arch: ArchSpec | null;
  /** `nmsparse.input`: the standardisation to apply to raw inputs, or null. */
  input: InputTransform | null;
  metadata: Record<string, string>;
}

export interface LoadModelOptions {
  /**
   * false: nm-form weights stay compressed (in `compressed` only), so loading never makes their dense tensors:
   * the memory a load takes is the file's size. Default true.
   */
  decompress?: boolean;
}

const err = (file: string, what: string) => new NmSparseError('E_IO', `${file}: ${what}`);

/** [co, ci, kh, kw] (PyTorch) → [co, kh, kw, ci] (N:M groups along ci; nmsparse's 'OHWI'), and back. */
export function convToGroupLayout(w: Tensor): Tensor {
  const [co, ci, kh, kw] = w.shape;
  return w.reshape([co, ci, kh * kw]).transpose().reshape([co, kh, kw, ci]);
}
export function convFromGroupLayout(w: Tensor): Tensor {
  const [co, kh, kw, ci] = w.shape;
  return w.reshape([co, kh * kw, ci]).transpose().reshape([co, ci, kh, kw]);
}

/** The tensors and metadata of a model file (see the file comment), validated; nothing written yet. */
export function buildModelFile(tensors: TensorMap, opts: SaveModelOptions = {}): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  if (tensors === null || typeof tensors !== 'object') throw new NmSparseError('E_TYPE', `tensors: got ${describe(tensors)}, expected a Map or an object of name → Tensor`);
  const input = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  const out = new Map<string, Tensor>(input);
  const sparsity: Record<string, LayerSparsity> = {};
  for (const [name, spec] of Object.entries(opts.sparsity ?? {})) {
    const arg = `options.sparsity[${JSON.stringify(name)}]`;
    const w = input.get(name);
    if (!(w instanceof Tensor)) throw new NmSparseError('E_VALUE', `${arg}: no tensor named ${JSON.stringify(name)} to save`);
    const isObj = spec !== null && typeof spec === 'object' && 'pattern' in spec;
    const p = parsePattern(isObj ? spec.pattern : spec, `${arg}.pattern`);
    const recipe = isObj ? spec.recipe : undefined;
    if (recipe !== undefined && typeof recipe !== 'string') throw new NmSparseError('E_TYPE', `${arg}.recipe: got ${describe(recipe)}, expected a string`);
    if (w.rank !== 2 && w.rank !== 4) throw new NmSparseError('E_SHAPE', `${arg}: ${w.describe()} is not a Linear [out, in] or Conv2d [co, ci, kh, kw] weight`);
    const grouped = w.rank === 4 ? convToGroupLayout(w) : w;
    const c = check(grouped, p);
    if (!c.ok)
      throw new NmSparseError('E_NOT_NM', `${arg}: ${JSON.stringify(name)} is not ${patternString(p)} sparse (group at [${c.firstViolation!.index.join(', ')}] has ${c.firstViolation!.nonzeros} non-zeros): prune it before saving`);
    const entry: LayerSparsity = { pattern: patternString(p), ...(recipe ? { recipe } : {}), form: opts.compressed ? 'nm' : 'dense', shape: [...w.shape] };
    if (opts.compressed) {
      const s = compress(grouped, p);
      out.delete(name);
      out.set(name + NM_VALUES, s.values);
      out.set(name + NM_POSITIONS, new Tensor([...s.values.shape.slice(0, -1), s.positions.length / (s.rows || 1)], 'uint8', s.positions));
      if (w.rank === 4) entry.layout = CONV_LAYOUT;
    }
    sparsity[name] = entry;
  }
  const metadata: Record<string, string> = { ...(opts.metadata ?? {}), format: 'pt', 'nmsparse.format': '1' };
  if (opts.arch !== undefined) metadata['nmsparse.arch'] = JSON.stringify(checkArch(opts.arch, 'options.arch'));
  if (opts.input !== undefined) metadata['nmsparse.input'] = JSON.stringify(checkInput(opts.input, 'options.input'));
  if (Object.keys(sparsity).length > 0) metadata['nmsparse.sparsity'] = JSON.stringify(sparsity);
  return { tensors: out, metadata };
}

/** Writes a model file (see the file comment for names and metadata). */
export async function saveModel(file: string, tensors: TensorMap, opts: SaveModelOptions = {}): Promise<void> {
  const m = buildModelFile(tensors, opts);
  await saveSafetensors(file, m.tensors, { metadata: m.metadata });
}

/** Synchronous saveModel. */
export function saveModelSync(file: string, tensors: TensorMap, opts: SaveModelOptions = {}): void {
  const m = buildModelFile(tensors, opts);
  saveSafetensorsSync(file, m.tensors, { metadata: m.metadata });
}

/** Reads a model file written by saveModel() or by PyTorch (then `sparsity` is empty, `arch` null). */
export async function loadModel(file: string, opts: LoadModelOptions = {}): Promise<ModelFile> {
  return modelFromContents(file, await loadSafetensors(file), opts);
}

/** Synchronous loadModel. */
export function loadModelSync(file: string, opts: LoadModelOptions = {}): ModelFile {
  return modelFromContents(file, loadSafetensorsSync(file), opts);
}

/** Validates an input transform {mean, std} (finite mean, std > 0); returns a copy. */
export function checkInput(v: unknown, arg = 'input'): InputTransform {
  const t = v as Partial<InputTransform> | null;
  if (t === null || typeof t !== 'object' || typeof t.mean !== 'number' || !Number.isFinite(t.mean) || typeof t.std !== 'number' || !(t.std > 0) || !Number.isFinite(t.std))
    throw new NmSparseError('E_VALUE', `${arg}: got ${describe(v)}, expected {mean: a finite number, std: a positive number}`);
  return { mean: t.mean, std: t.std };
}

function parseJsonMeta(file: string, metadata: Record<string, string>, key: string): unknown {
  if (!(key in metadata)) return undefined;
  try {
    return JSON.parse(metadata[key]);
  } catch (e) {
    throw err(file, `metadata ${key} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Builds the ModelFile view of a safetensors file's contents, validating the nmsparse metadata. */
export function modelFromContents(file: string, st: SafetensorsContents, opts: LoadModelOptions = {}): ModelFile {
  if (opts === null || typeof opts !== 'object') throw new NmSparseError('E_TYPE', `options: got ${describe(opts)}, expected an object`);
  const decompress = opts.decompress ?? true;
  if (typeof decompress !== 'boolean') throw new NmSparseError('E_TYPE', `options.decompress: got ${describe(decompress)}, expected a boolean`);
  const tensors = new Map(st.tensors);
  const compressed = new Map<string, SparseTensor>();
  const rawArch = parseJsonMeta(file, st.metadata, 'nmsparse.arch');
  let arch: ArchSpec | null = null;
  if (rawArch !== undefined) {
    try {
      arch = checkArch(rawArch, 'nmsparse.arch');
    } catch (e) {
      throw err(file, `metadata ${(e as Error).message}`);
    }
  }
  const rawInput = parseJsonMeta(file, st.metadata, 'nmsparse.input');
  let input: InputTransform | null = null;
  if (rawInput !== undefined) {
    try {
      input = checkInput(rawInput, 'nmsparse.input');
    } catch (e) {
      throw err(file, `metadata ${(e as Error).message}`);
    }
  }
  const rawSp = parseJsonMeta(file, st.metadata, 'nmsparse.sparsity') ?? {};
  if (rawSp === null || typeof rawSp !== 'object' || Array.isArray(rawSp)) throw err(file, 'metadata nmsparse.sparsity is not a JSON object');
  const sparsity: Record<string, LayerSparsity> = {};
  for (const [name, raw] of Object.entries(rawSp as Record<string, unknown>)) {
    const where = `nmsparse.sparsity[${JSON.stringify(name)}]`;
    const e = raw as Partial<LayerSparsity>;
    if (!e || typeof e !== 'object') throw err(file, `${where} is ${describe(raw)}, expected an object`);
    let p: Pattern;
    try {
      p = parsePattern(e.pattern, `${where}.pattern`);
    } catch (x) {
      throw err(file, (x as Error).message);
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || (shape.length !== 2 && shape.length !== 4) || !shape.every((d) => Number.isSafeInteger(d) && d > 0))
      throw err(file, `${where}.shape is ${describe(shape)}, expected the dense weight's shape (rank 2 or 4)`);
    const grouped = shape.length === 4 ? [shape[0], shape[2], shape[3], shape[1]] : shape;
    const cols = grouped[grouped.length - 1];
    if (cols % p.m !== 0) throw err(file, `${where}: a last dimension of ${cols} is not a multiple of ${p.m}`);
    if (e.form === 'nm') {
      if (tensors.has(name)) throw err(file, `${where}: form "nm" but the dense tensor ${JSON.stringify(name)} is present too`);
      const v = tensors.get(name + NM_VALUES), pos = tensors.get(name + NM_POSITIONS);
      if (!v || !pos) throw err(file, `${where}: form "nm" needs tensors ${JSON.stringify(name + NM_VALUES)} and ${JSON.stringify(name + NM_POSITIONS)}`);
      const want = [...grouped.slice(0, -1), (cols / p.m) * p.n];
      if (v.rank !== want.length || v.shape.some((d, i) => d !== want[i]))
        throw new NmSparseError('E_SHAPE', `${file}: tensor ${JSON.stringify(name + NM_VALUES)}: shape [${v.shape.join(', ')}], expected [${want.join(', ')}] for a ${patternString(p)} weight of shape [${shape.join(', ')}]`);
      const bits = Math.log2(p.m), kept = want[want.length - 1], rowBytes = Math.ceil((kept * bits) / 8);
      const wantPos = [...grouped.slice(0, -1), rowBytes];
      if (pos.dtype !== 'uint8' || pos.rank !== wantPos.length || pos.shape.some((d, i) => d !== wantPos[i]))
        throw new NmSparseError(pos.dtype !== 'uint8' ? 'E_DTYPE' : 'E_SHAPE', `${file}: tensor ${JSON.stringify(name + NM_POSITIONS)}: ${pos.describe()}, expected a uint8 tensor [${wantPos.join(', ')}]`);
      const positions = pos.storage() as Uint8Array;
      const bad = badPositions(positions, v.size / kept, kept, rowBytes, p);
      if (bad)
        throw new NmSparseError('E_IO', `${file}: tensor ${JSON.stringify(name + NM_POSITIONS)}: row ${bad[0]}, group ${bad[1]}: positions are not strictly ascending (corrupted)`);
      const s = new SparseTensor(grouped, p, v.dtype, { values: v, positions }, CHECKED);
      tensors.delete(name + NM_VALUES);
      tensors.delete(name + NM_POSITIONS);
      if (decompress) {
        const dense = s.decompress();
        tensors.set(name, shape.length === 4 ? convFromGroupLayout(dense) : dense);
      }
      compressed.set(name, s);
    } else if (e.form === 'dense') {
      const w = tensors.get(name);
      if (!w) throw err(file, `${where}: no tensor named ${JSON.stringify(name)}`);
      if (w.rank !== shape.length || w.shape.some((d, i) => d !== shape[i]))
        throw new NmSparseError('E_SHAPE', `${file}: tensor ${JSON.stringify(name)}: shape [${w.shape.join(', ')}], but ${where}.shape is [${shape.join(', ')}]`);
      const c = check(shape.length === 4 ? convToGroupLayout(w) : w, p);
      if (!c.ok) throw new NmSparseError('E_NOT_NM', `${file}: tensor ${JSON.stringify(name)} is recorded as ${patternString(p)} but is not (group at [${c.firstViolation!.index.join(', ')}])`);
    } else {
      throw err(file, `${where}.form is ${describe(e.form)}, expected "dense" or "nm"`);
    }
    sparsity[name] = { pattern: patternString(p), ...(typeof e.recipe === 'string' ? { recipe: e.recipe } : {}), form: e.form, shape: [...shape], ...(e.form === 'nm' && shape.length === 4 ? { layout: CONV_LAYOUT } : {}) };
  }
  return { tensors, compressed, sparsity, arch, input, metadata: st.metadata };
}

const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

/** Validates an architecture spec; returns a normalized copy. */
export function checkArch(a: unknown, arg = 'arch'): ArchSpec {
  const bad = (what: string): never => { throw new NmSparseError('E_VALUE', `${arg}: ${what}`); };
  if (!a || typeof a !== 'object' || (a as ArchSpec).type !== 'Sequential' || !Array.isArray((a as ArchSpec).layers))
    bad(`got ${describe(a)}, expected {type: "Sequential", layers: [...]}`);
  const { prefix = '', layers } = a as ArchSpec;
  if (typeof prefix !== 'string') bad(`prefix is ${describe(prefix)}, expected a string`);
  const names = new Set<string>();
  const out: LayerSpec[] = layers.map((l, i) => {
    const t = (l as { type?: unknown })?.type;
    const name = (l as { name?: unknown }).name;
    if (name !== undefined && (typeof name !== 'string' || name === '' || name.includes('.'))) bad(`layers[${i}].name is ${describe(name)}, expected a non-empty string without dots`);
    const key = (name as string | undefined) ?? String(i);
    if (names.has(key)) bad(`layers[${i}]: the name ${JSON.stringify(key)} is used twice`);
    names.add(key);
    const named = name === undefined ? {} : { name: name as string };
    const L = l as Record<string, unknown>;
    const shape = (what: string): never => bad(`layers[${i}]: got ${JSON.stringify(l)}, expected ${what}`);
    const pair = (v: unknown, min: number): v is [number, number] =>
      Array.isArray(v) && v.length === 2 && v.every((d) => Number.isSafeInteger(d) && d >= min);
    const bias = L.bias ?? true;
    switch (t) {
      case 'ReLU': case 'GELU': case 'Flatten':
        return { ...named, type: t };
      case 'Linear':
        if (!isPosInt(L.in) || !isPosInt(L.out) || typeof bias !== 'boolean') shape('{type: "Linear", in: int, out: int, bias?: bool}');
        return { ...named, type: 'Linear', in: L.in as number, out: L.out as number, bias: bias as boolean };
      case 'Conv2d':
        if (!isPosInt(L.in) || !isPosInt(L.out) || !pair(L.kernel, 1) || !pair(L.stride, 1) || !pair(L.padding, 0) || typeof bias !== 'boolean')
          shape('{type: "Conv2d", in, out, kernel: [kh, kw], stride: [sh, sw], padding: [ph, pw], bias?}');
        return { ...named, type: 'Conv2d', in: L.in as number, out: L.out as number, kernel: [...(L.kernel as [number, number])], stride: [...(L.stride as [number, number])], padding: [...(L.padding as [number, number])], bias: bias as boolean };
      case 'MaxPool2d':
        if (!pair(L.kernel, 1) || !pair(L.stride, 1) || !pair(L.padding, 0)) shape('{type: "MaxPool2d", kernel, stride, padding}');
        return { ...named, type: 'MaxPool2d', kernel: [...(L.kernel as [number, number])], stride: [...(L.stride as [number, number])], padding: [...(L.padding as [number, number])] };
      case 'LayerNorm': {
        const eps = L.eps ?? 1e-5, affine = L.affine ?? true;
        if (!isPosInt(L.dim) || typeof eps !== 'number' || !(eps > 0) || typeof affine !== 'boolean') shape('{type: "LayerNorm", dim, eps?, affine?}');
        return { ...named, type: 'LayerNorm', dim: L.dim as number, eps: eps as number, affine: affine as boolean };
      }
      case 'Reshape':
        if (!Array.isArray(L.shape) || L.shape.length === 0 || !L.shape.every(isPosInt)) shape('{type: "Reshape", shape: [positive ints]}');
        return { ...named, type: 'Reshape', shape: [...(L.shape as number[])] };
      case 'Dropout':
        if (typeof L.p !== 'number' || !(L.p >= 0 && L.p < 1)) shape('{type: "Dropout", p: [0, 1)}');
        return { ...named, type: 'Dropout', p: L.p as number };
    }
    return bad(`layers[${i}]: type ${describe(t)} is not one of Linear, Conv2d, MaxPool2d, LayerNorm, Reshape, Dropout, ReLU, GELU, Flatten`);
  });
  return { type: 'Sequential', ...(prefix ? { prefix } : {}), layers: out };
}

/** Most parameterless modules (activation, dropout, flatten) inferMlpArch accepts between two Linear layers. */
const MAX_MLP_GAP = 4;

/**
 * The architecture of a PyTorch MLP from its tensors: Linear layers at `${prefix}.${i}.weight` with ReLU (or
 * `activation`) at the indices between them, as `nn.Sequential(Linear, ReLU, …, Linear)` names them. Without
 * `prefix`, the one the names use: '' for a plain nn.Sequential's state_dict (`0.weight`, `2.weight`, …),
 * 'layers' for `self.layers = nn.Sequential(...)` (`layers.0.weight`), any other module path alike. `tensors` may
 * hold SparseTensors (the nm-form weights of a file loaded with `decompress: false`).
 */
export function inferMlpArch(tensors: ReadonlyMap<string, { readonly shape: readonly number[]; describe(): string }>, prefix?: string, activation: 'ReLU' | 'GELU' = 'ReLU'): ArchSpec {
  const byPrefix = new Map<string, number[]>();
  for (const k of tensors.keys()) {
    const m = /^(?:(.+)\.)?(\d+)\.weight$/.exec(k);
    if (!m) continue;
    const at = byPrefix.get(m[1] ?? '') ?? [];
    byPrefix.set(m[1] ?? '', at);
    at.push(Number(m[2]));
  }
  if (prefix === undefined) {
    if (byPrefix.size > 1)
      throw new NmSparseError('E_VALUE', `arch "mlp": the weights form more than one Sequential (${[...byPrefix.keys()].map((p) => (p ? `${p}.<i>.weight` : '<i>.weight')).join(', ')}): pass the architecture`);
    prefix = byPrefix.keys().next().value ?? '';
  }
  const at = (i: number | string) => (prefix ? `${prefix}.${i}.weight` : `${i}.weight`);
  const idx = (byPrefix.get(prefix) ?? []).sort((a, b) => a - b);
  if (idx.length === 0) throw new NmSparseError('E_VALUE', `arch "mlp": no tensors named ${at('<i>')}${byPrefix.size === 0 && prefix === '' ? ' or <prefix>.<i>.weight' : ''}`);
  // The indices between two weights are parameterless modules (activation, dropout, flatten): a few at most. A
  // file naming layers.1000000000.weight must not make a billion-entry layer list.
  for (let j = 0, prev = -1; j < idx.length; prev = idx[j++])
    if (idx[j] - prev > MAX_MLP_GAP + 1)
      throw new NmSparseError('E_VALUE', `arch "mlp": ${at(idx[j])} comes ${idx[j] - prev - 1} indices after ${prev < 0 ? 'the start' : at(prev)}, expected at most ${MAX_MLP_GAP} parameterless modules between Linear layers`);
  const layers: LayerSpec[] = [];
  for (let i = 0; i <= idx[idx.length - 1]; i++) {
    const w = tensors.get(at(i));
    if (w) {
      if (w.shape.length !== 2) throw new NmSparseError('E_SHAPE', `arch "mlp": ${at(i)} is ${w.describe()}, expected a Linear weight [out, in]`);
      layers.push({ type: 'Linear', in: w.shape[1], out: w.shape[0], bias: tensors.has(at(i).replace(/weight$/, 'bias')) });
    } else {
      layers.push({ type: activation });
    }
  }
  return { type: 'Sequential', ...(prefix ? { prefix } : {}), layers };
}
