/**
 * InferenceModel: a feed-forward network loaded from a checkpoint, ready to serve.
 *
 *   const model = await InferenceModel.load('mlp.safetensors', { maxBatch: 64 });
 *   const y = await model.predict(x);          // x: Tensor [B, in] or number[][]; y: float32 Tensor [B, out]
 *
 * The network comes from the checkpoint's `nmsparse.arch` metadata (lib/io/model-file.ts), or from the `arch`
 * option for a file made elsewhere (`'mlp'`: the Linear layers of a PyTorch nn.Sequential state_dict, `0.weight`,
 * `2.weight`, … or `layers.0.weight`, …, with ReLU between). A state_dict does not say which activation the
 * network used, so the option is required there rather than guessed.
 *
 * N:M-sparse weights run through the sparse product, compressed once at load (a SparseTensor; on 'cuda' the
 * backend's device form); the others through the dense GEMM. Which weights are N:M: the file's
 * `nmsparse.sparsity`; else the `pattern` option (the weights that satisfy it); else each weight is checked at load
 * against 1:8, 1:4, 2:8, 3:8, 2:4, 4:8 and runs with the sparsest that holds exactly (info() says `patternFrom`:
 * 'file', 'option' or 'detected'). A file in the compressed nm form is used as it is: its dense weights are never
 * made (a Conv2d weight, or one going to a GPU, is converted alone, one tensor at a time).
 *
 * The file's input transform (`nmsparse.input`, the standardisation training applied) is applied to every input
 * first, so predict() and forward() take raw values (MNIST pixels in [0, 1]).
 *
 * Products use the async native forms, so predict() never blocks the event loop; concurrent predict() calls are
 * safe: one that finds the model idle runs at once, those that queue behind a running batch run together as the
 * next one (lib/serve/batcher.ts).
 */
import { NmSparseError, fail } from '../errors.js';
import { backendFor, isDevice, type Activation, type Device } from '../device.js';
import { parsePattern, patternString, type Pattern } from '../pattern.js';
import { check } from '../mask.js';
import { CHECKED, SparseTensor, compress } from '../compress.js';
import { Tensor, checkTensor, tensor } from '../tensor.js';
import { allocPinnedStorage, isPinned } from '../dtype.js';
import { PackedWeight, linear, linearAsync } from '../gemm.js';
import { MlpPlan } from '../mlp.js';
import { packSparse, sparseLinear, sparseLinearAsync, unpackSparse } from '../spmm.js';
import { geluForward, im2col, layerNormForward, maxPoolForward, reluForward, type Window2d } from '../nn/elementwise.js';
import { checkArch, convFromGroupLayout, convToGroupLayout, inferMlpArch, loadModel, paramName, type ArchSpec, type InputTransform, type LayerSpec, type ModelFile } from '../io/model-file.js';
import { Batcher, type BatcherStats } from './batcher.js';

export interface InferenceOptions {
  /** 'cpu' (default) or 'cuda' (E_DEVICE when no usable GPU). */
  device?: Device;
  /** Most rows in one coalesced batch (default 64). */
  maxBatch?: number;
  /**
   * How long a request that finds the model idle waits for others to batch with, in ms. Default 0: it runs at
   * once, and requests batch only when they queue behind a running batch (lib/serve/batcher.ts).
   */
  maxDelayMs?: number;
  /**
   * Architecture for a file without `nmsparse.arch`: a spec (which overrides the file's), or 'mlp' (the Linear
   * layers of a state_dict; a file that records an MLP keeps its own, names and activations included).
   */
  arch?: ArchSpec | 'mlp';
  /** For a file without N:M metadata: run as sparse every Linear weight that is N:M sparse under this pattern. */
  pattern?: string | Pattern;
  /** false: run every layer dense, even N:M ones (to compare). Default true. */
  sparse?: boolean;
  /**
   * false: the inputs given are already transformed, so the file's `nmsparse.input` standardisation is not applied.
   * Default true.
   */
  inputTransform?: boolean;
}

/**
 * A product: y = x·Wᵀ + b, dense or N:M sparse. Conv2d runs as im2col + this product. A dense weight on the CPU
 * is packed once here for the GEMM's kernels (a PackedWeight), not on every call.
 */
type Product = { w: Tensor | PackedWeight; s: null } | { w: null; s: SparseTensor };

type Op =
  | ({ kind: 'linear'; name: string; b: Tensor | null; in: number; out: number; activation?: Activation } & Product)
  | ({ kind: 'conv'; name: string; b: Tensor | null; window: Window2d; out: number; activation?: Activation } & Product)
  | { kind: 'maxpool'; window: Window2d }
  | { kind: 'layernorm'; gamma: Tensor | null; beta: Tensor | null; eps: number }
  | { kind: 'reshape'; shape: number[] }
  | { kind: 'relu' | 'gelu' | 'identity' };

export interface LayerInfo {
  type: string;
  in?: number;
  out?: number;
  /** 'dense', or the N:M pattern a sparse layer runs with. */
  weight?: string;
  /** Where a sparse layer's pattern comes from: the file's metadata, the `pattern` option, or detected at load. */
  patternFrom?: 'file' | 'option' | 'detected';
}

export interface ModelInfo {
  file: string | null;
  device: Device;
  inputs: number;
  outputs: number;
  layers: LayerInfo[];
  /** Bytes of the weights as held for inference (compressed where sparse). */
  weightBytes: number;
  /** Bytes the same weights take dense. */
  denseWeightBytes: number;
  /** Bytes of the packed copies of the weights on the CPU (PackedWeight; packSparse for N:4), beside weightBytes. */
  packedBytes: number;
  /** The standardisation applied to every input value (the file's `nmsparse.input`), or null. */
  input: InputTransform | null;
  maxBatch: number;
  maxDelayMs: number;
  metadata: Record<string, string>;
}

// Products that cost at most this many multiply-adds (≤ 0.2 ms on a 2-core Zen 5) run on the calling thread in
// InferenceModel.forward: the trip to a worker and back (tens of µs, timed there) would cost more than the loop they hold.
const SYNC_MACS = 1 << 23;
// What a product of `rows` rows with a weight [n, k] costs against SYNC_MACS: the multiply-adds it does (an N:M
// product N/M of the dense count: `density`), and at least the weight it reads, a byte counted as half a
// multiply-add (16 MB: about 0.2 ms from L3, longer from memory), so that a 4096² 2:4 layer at one row (8M
// multiply-adds, 1 ms streaming its 34 MB on Zen 4) does not run on the loop.
const productCost = (rows: number, k: number, n: number, density: number) => Math.max(rows, 2) * k * n * density;
// The largest intermediate result (floats: 8 MB) kept from run to run for a forward() over maxBatch rows.
const SCRATCH_FLOATS = 1 << 21;
const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

export class InferenceModel {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly device: Device;
  #ops: Op[];
  /** By op index: whether a later op is a product (which reads this op's result before the run ends). */
  #feedsProduct: boolean[];
  #hasProduct: boolean;
  #transform: InputTransform | null;
  /** A CPU network of Linear layers, dense or N:M (ReLU or nothing after each), runs as one native call (lib/mlp.ts). */
  #mlp: MlpPlan | null;
  #batcher: Batcher;
  #info: ModelInfo;
  #disposed = false;

  private constructor(ops: Op[], info: ModelInfo) {
    this.#ops = ops;
    this.#feedsProduct = ops.map((_, i) => ops.slice(i + 1).some((o) => o.kind === 'linear' || o.kind === 'conv'));
    this.#hasProduct = ops.some((o) => o.kind === 'linear' || o.kind === 'conv');
    const linears = ops.filter((o) => o.kind === 'linear');
    const chain = linears.length === ops.length && linears.every((o) => (o.w instanceof PackedWeight || o.s?.device === 'cpu') && (o.activation ?? 'relu') === 'relu');
    this.#mlp = chain ? new MlpPlan(linears.map((o) => ({ weight: (o.s ?? o.w) as PackedWeight | SparseTensor, bias: o.b, relu: o.activation === 'relu' }))) : null;
    this.#info = info;
    this.#transform = info.input;
    this.device = info.device;
    this.inFeatures = info.inputs;
    this.outFeatures = info.outputs;
    this.#batcher = new Batcher((x, rows) => this.#runRows(x, rows), this.inFeatures, this.outFeatures, info.maxBatch, info.maxDelayMs);
  }

  /** Loads a checkpoint (safetensors, lib/io/model-file.ts) and builds the network. */
  static async load(file: string, opts: InferenceOptions = {}): Promise<InferenceModel> {
    const o = checkOptions(opts);
    // The GPU backend registers itself when lib/cuda.ts is loaded (nothing happens without a CUDA build).
    if (o.device !== 'cpu') await import('../cuda.js');
    // nm-form weights stay compressed: loading never makes their dense tensors.
    return InferenceModel.fromModelFile(await loadModel(file, { decompress: false }), { ...o }, file);
  }

  /** Builds the network from a loaded ModelFile (tensors in PyTorch layout). */
  static fromModelFile(mf: ModelFile, opts: InferenceOptions = {}, file: string | null = null): InferenceModel {
    const o = checkOptions(opts);
    const where = file ?? 'model';
    const arch = o.arch === 'mlp' ? recordedMlp(mf.arch, where) ?? inferMlpArch(new Map<string, Tensor | SparseTensor>([...mf.tensors, ...mf.compressed])) : o.arch !== undefined ? checkArch(o.arch, 'options.arch') : mf.arch;
    if (!arch) throw new NmSparseError('E_VALUE', `${where}: the file records no architecture (nmsparse.arch): pass options.arch (--arch for nmsparse serve): a spec, or 'mlp'`);
    if (o.device !== 'cpu') backendFor(o.device, 'options.device');
    /**
     * Tensor `name` of `shape` (PyTorch layout) as float32. An nm-form weight (kept compressed) is checked against
     * its recorded shape and decompressed only when `dense` is called: the sparse CPU path never calls it.
     */
    const weight = (name: string, shape: number[]): { pre: SparseTensor | null; dense: () => Tensor } => {
      const pre = mf.compressed.get(name) ?? null;
      const t = mf.tensors.get(name);
      const held = t?.shape ?? (pre ? mf.sparsity[name].shape : null);
      const dtype = t?.dtype ?? pre?.dtype;
      if (!held) throw new NmSparseError('E_VALUE', `${where}: the architecture needs tensor ${JSON.stringify(name)}, which the file does not hold`);
      const desc = () => t?.describe() ?? `a ${pre!.describe()} (nm form of [${held.join(', ')}])`;
      if (held.length !== shape.length || held.some((d, i) => d !== shape[i]))
        throw new NmSparseError('E_SHAPE', `${where}: tensor ${JSON.stringify(name)} is ${desc()}, the architecture needs [${shape.join(', ')}]`);
      if (dtype === 'int8' || dtype === 'uint8')
        throw new NmSparseError('E_DTYPE', `${where}: tensor ${JSON.stringify(name)} is ${desc()}, expected floating point`);
      let memo: Tensor | null = null;
      const dense = (): Tensor => {
        if (memo) return memo;
        const d = t ?? (shape.length === 4 ? convFromGroupLayout(pre!.decompress()) : pre!.decompress());
        return (memo = d.dtype === 'float32' ? d : d.astype('float32'));
      };
      return { pre, dense };
    };
    const get = (name: string, shape: number[]): Tensor => weight(name, shape).dense();
    const dev = (t: Tensor | null): Tensor | null => (t && o.device !== 'cpu' ? t.to(o.device) : t);

    const ops: Op[] = [];
    const layers: LayerInfo[] = [];
    let weightBytes = 0, denseWeightBytes = 0, packedBytes = 0;
    let inputs: number | null = null;
    let cur: number[] | null = null; // the shape of one row as it flows (null until the first layer fixes it)
    const size = (sh: number[]) => sh.reduce((a, b) => a * b, 1);
    const need = (i: number, what: string, ok: boolean) => {
      if (!ok) throw new NmSparseError('E_SHAPE', `${where}: layer ${i} (${describeLayer(arch.layers[i])}) needs ${what}, but its input rows are [${cur?.join(', ')}]`);
    };
    /**
     * The product for a weight held as [out, k] (`w2`; `grouped`: its N:M groups along the last dimension), sparse
     * when the file, the options or its values say so. A compressed Linear weight from the file is used as it is
     * (its values converted to float32 when they are not).
     */
    const product = (name: string, pre: SparseTensor | null, w2: () => Tensor, grouped: () => Tensor, groupOk: (p: Pattern) => boolean): { prod: Product; label: string; from?: LayerInfo['patternFrom'] } => {
      const found = o.sparse ? sparsePattern(mf, name, grouped, o.pattern, groupOk) : null;
      if (found) {
        const { p, from } = found;
        const sp = pre && o.device === 'cpu' && pre.shape.length === 2
          ? (pre.dtype === 'float32' ? pre : new SparseTensor(pre.shape, pre.pattern, 'float32', { values: pre.values.astype('float32'), positions: pre.positions }, CHECKED))
          : compress(o.device === 'cpu' ? w2() : w2().to(o.device), p);
        denseWeightBytes += sp.denseBytes;
        weightBytes += sp.bytes;
        packedBytes += packSparse(sp); // 0 off the CPU or where there is no packed form
        return { prod: { w: null, s: sp }, label: patternString(p), from };
      }
      const w = w2();
      denseWeightBytes += w.bytes;
      weightBytes += w.bytes;
      if (o.device !== 'cpu') return { prod: { w: dev(w)!, s: null }, label: 'dense' };
      const pw = new PackedWeight(w);
      packedBytes += pw.bytes;
      return { prod: { w: pw, s: null }, label: 'dense' };
    };
    arch.layers.forEach((l, i) => {
      const pname = (param: string) => paramName(arch, i, param);
      switch (l.type) {
        case 'Linear': {
          if (cur === null) { cur = [l.in]; inputs = l.in; }
          need(i, `rows of ${l.in} features`, cur.length === 1 && cur[0] === l.in);
          const { pre, dense } = weight(pname('weight'), [l.out, l.in]);
          const b = l.bias === false ? null : get(pname('bias'), [l.out]);
          const { prod, label, from } = product(pname('weight'), pre, dense, dense, (p) => l.in % p.m === 0);
          ops.push({ kind: 'linear', name: pname('weight'), b: dev(b), in: l.in, out: l.out, ...prod });
          layers.push({ type: 'Linear', in: l.in, out: l.out, weight: label, ...(from ? { patternFrom: from } : {}) });
          cur = [l.out];
          break;
        }
        case 'Conv2d': {
          need(i, `images [h, w, ${l.in}] (NHWC; put a Reshape first)`, cur !== null && cur.length === 3 && cur[2] === l.in);
          const [h, wd] = cur!;
          const [kh, kw] = l.kernel, [sh, sw] = l.stride, [ph, pw] = l.padding;
          need(i, 'images at least as large as the kernel', h + 2 * ph >= kh && wd + 2 * pw >= kw);
          const { dense } = weight(pname('weight'), [l.out, l.in, kh, kw]);
          let ohwi: Tensor | null = null;
          const grouped = () => (ohwi ??= convToGroupLayout(dense()));
          const b = l.bias === false ? null : get(pname('bias'), [l.out]);
          // The nm form of a conv weight groups rows of ci, the product rows of kh·kw·ci: compressed again (this tensor alone).
          const { prod, label, from } = product(pname('weight'), null, () => grouped().reshape([l.out, kh * kw * l.in]), grouped, (p) => l.in % p.m === 0);
          ops.push({ kind: 'conv', name: pname('weight'), b: dev(b), window: { kernel: [kh, kw], stride: [sh, sw], padding: [ph, pw] }, out: l.out, ...prod });
          layers.push({ type: 'Conv2d', in: l.in, out: l.out, weight: label, ...(from ? { patternFrom: from } : {}) });
          cur = [Math.floor((h + 2 * ph - kh) / sh) + 1, Math.floor((wd + 2 * pw - kw) / sw) + 1, l.out];
          break;
        }
        case 'MaxPool2d': {
          need(i, 'images [h, w, c]', cur !== null && cur.length === 3);
          const [h, wd, c] = cur!;
          const [kh, kw] = l.kernel, [sh, sw] = l.stride, [ph, pw] = l.padding;
          need(i, 'images at least as large as the window', h + 2 * ph >= kh && wd + 2 * pw >= kw);
          ops.push({ kind: 'maxpool', window: { kernel: [kh, kw], stride: [sh, sw], padding: [ph, pw] } });
          layers.push({ type: 'MaxPool2d' });
          cur = [Math.floor((h + 2 * ph - kh) / sh) + 1, Math.floor((wd + 2 * pw - kw) / sw) + 1, c];
          break;
        }
        case 'LayerNorm': {
          if (cur === null) { cur = [l.dim]; inputs = l.dim; }
          need(i, `a last dimension of ${l.dim}`, cur[cur.length - 1] === l.dim);
          // nmsparse names its LayerNorm parameters gamma/beta, PyTorch weight/bias
          const param = (a: string, b: string) => (mf.tensors.has(pname(a)) ? get(pname(a), [l.dim]) : get(pname(b), [l.dim]));
          const affine = l.affine !== false;
          ops.push({ kind: 'layernorm', gamma: affine ? dev(param('gamma', 'weight')) : null, beta: affine ? dev(param('beta', 'bias')) : null, eps: l.eps ?? 1e-5 });
          layers.push({ type: 'LayerNorm' });
          break;
        }
        case 'Reshape':
          if (cur === null) { cur = [size(l.shape)]; inputs = size(l.shape); }
          need(i, `rows of ${size(l.shape)} values`, size(cur) === size(l.shape));
          ops.push({ kind: 'reshape', shape: [...l.shape] });
          layers.push({ type: 'Reshape' });
          cur = [...l.shape];
          break;
        case 'Flatten':
          if (cur !== null) cur = [size(cur)];
          ops.push(cur === null ? { kind: 'identity' } : { kind: 'reshape', shape: cur });
          layers.push({ type: 'Flatten' });
          break;
        case 'ReLU': case 'GELU': case 'Dropout':
          ops.push({ kind: l.type === 'ReLU' ? 'relu' : l.type === 'GELU' ? 'gelu' : 'identity' });
          layers.push({ type: l.type });
          break;
      }
    });
    if (inputs === null || cur === null) throw new NmSparseError('E_VALUE', `${where}: the architecture has no layer that fixes the input size (Linear, Reshape or LayerNorm first)`);
    const outRow: number[] = cur;
    if (outRow.length !== 1) ops.push({ kind: 'reshape', shape: [size(outRow)] });
    fuseActivations(ops);
    return new InferenceModel(ops, {
      file, device: o.device, inputs, outputs: size(outRow), layers, weightBytes, denseWeightBytes, packedBytes,
      input: o.inputTransform ? mf.input : null, maxBatch: o.maxBatch, maxDelayMs: o.maxDelayMs, metadata: mf.metadata,
    });
  }

  /** What was loaded: layers, sizes, device, batching. */
  info(): ModelInfo {
    return { ...this.#info, layers: this.#info.layers.map((l) => ({ ...l })), input: this.#transform && { ...this.#transform } };
  }

  get batchStats(): Readonly<BatcherStats> { return { ...this.#batcher.stats }; }

  /**
   * Outputs for a batch: `x` a float32 Tensor [B, in] (or [in] for one row) or nested number arrays. Batched with
   * concurrent calls. Returns a float32 CPU Tensor [B, out].
   */
  async predict(x: Tensor | number[][] | number[]): Promise<Tensor> {
    const { data, rows } = this.#input(x);
    const y = await this.predictRows(data, rows);
    return new Tensor([rows, this.outFeatures], 'float32', y);
  }

  /** predict() on raw rows: `x` holds rows × inFeatures float32 values. The server's entry point. */
  predictRows(x: Float32Array, rows: number): Promise<Float32Array> {
    this.#alive();
    if (!(x instanceof Float32Array)) fail('E_TYPE', 'x', x, 'a Float32Array');
    if (!isPosInt(rows) || x.length !== rows * this.inFeatures)
      fail('E_SHAPE', 'x', x, `${rows} rows of ${this.inFeatures} values (${rows * this.inFeatures} floats)`);
    return this.#batcher.submit(x, rows);
  }

  /**
   * One forward pass of exactly this batch, without batching (small products inline, larger ones off the event loop).
   * Work off the loop reads a copy of `x` made at the call, or, when `x` is pinned storage (lib/dtype.ts isPinned),
   * `x` itself, as every async op does: then it must not change until the promise settles.
   */
  async forward(x: Tensor): Promise<Tensor> {
    const { data, rows } = this.#input(x);
    return new Tensor([rows, this.outFeatures], 'float32', await this.#runRows(data, rows));
  }

  /** Waits for queued and running batches. */
  drained(): Promise<void> { return this.#batcher.drained(); }

  /** Frees the weights (device memory at once). Waits for running work first. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    await this.#batcher.drained();
    this.#disposed = true;
    this.#scratch = [];
    this.#mlp = null;
    for (const op of this.#ops) {
      if (op.kind === 'linear' || op.kind === 'conv') {
        if (op.w instanceof PackedWeight) op.w.weight.dispose();
        if (op.s) unpackSparse(op.s);
        op.w?.dispose(); op.s?.dispose(); op.b?.dispose();
      }
      if (op.kind === 'layernorm') { op.gamma?.dispose(); op.beta?.dispose(); }
    }
  }

  #alive(): void {
    if (this.#disposed) throw new NmSparseError('E_DISPOSED', 'model: the InferenceModel was disposed');
  }

  #input(x: unknown): { data: Float32Array; rows: number } {
    this.#alive();
    let t: Tensor;
    if (Array.isArray(x)) t = tensor(x as number[][]);
    else t = checkTensor(x, 'x');
    if (t.dtype !== 'float32') t = t.astype('float32');
    if (t.device !== 'cpu') t = t.to('cpu');
    const rows = t.rank === 1 ? 1 : t.shape[0];
    if (t.rank > 2 || t.rank === 0 || t.shape[t.rank - 1] !== this.inFeatures || rows < 1)
      fail('E_SHAPE', 'x', t, `a float32 tensor [batch, ${this.inFeatures}] with batch >= 1`);
    return { data: t.storage() as Float32Array, rows };
  }

  #inlineMacs = 0;
  #inlineReset = false;
  /**
   * Buffers for the products' intermediate results, reused from run to run (a fresh 1 MB result per product costs
   * its allocation and page faults, 8.2 -> 6.8 ms for the MNIST MLP at batch 256 here): one set per run in flight, by op index, for runs of
   * at most maxBatch rows, and for a larger forward() a buffer of up to SCRATCH_FLOATS (a forward() of 256 rows
   * past the default maxBatch of 64 faulted in 1 MB per layer: 1.5 ms of the MNIST MLP's 6.2 on the Xeon); larger
   * results are fresh, so the sets stay bounded.
   */
  #scratch: Float32Array[][] = [];

  /**
   * Inline work since the loop last turned stays under SYNC_MACS: a stream of small batches cannot hold it. Whether
   * `macs` more may run inline now (after a turn of the loop when the budget is spent).
   */
  async #inline(macs: number): Promise<boolean> {
    if (macs > SYNC_MACS) return false;
    if ((this.#inlineMacs += macs) > SYNC_MACS) {
      this.#inlineMacs = macs;
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (!this.#inlineReset) {
      this.#inlineReset = true;
      setImmediate(() => { this.#inlineMacs = 0; this.#inlineReset = false; });  // the loop turned
    }
    return true;
  }

  /** The network on `rows` rows. */
  async #runRows(x: Float32Array, rows: number): Promise<Float32Array> {
    this.#alive();
    if (this.#mlp) return this.#runMlp(x, rows, this.#mlp);
    const gpu = this.device !== 'cpu';
    // Device memory of the intermediates is freed as soon as the batch is done, not left to the finalizers.
    const temps: Tensor[] = [];
    const keep = (t: Tensor): Tensor => { if (gpu) temps.push(t); return t; };
    const scratch = this.#scratch.pop() ?? [];
    const ops = this.#ops, feeds = this.#feedsProduct;
    // This run's buffer `at` (by op index; ops.length: the input, only in a network with a product, so that the
    // result is never in it) of n floats: kept from run to run while it is small enough (see #scratch), else fresh. Pinned,
    // so that an async product neither copies nor holds it.
    const buffer = (at: number, n: number): Float32Array => {
      if (rows > this.#info.maxBatch && n > SCRATCH_FLOATS) return allocPinnedStorage('float32', n) as Float32Array;
      if (!(scratch[at]?.length >= n)) scratch[at] = allocPinnedStorage('float32', n) as Float32Array;
      return scratch[at].subarray(0, n);
    };
    const input = rows * this.inFeatures;
    let h = new Tensor([rows, this.inFeatures], 'float32', this.#transform ? standardize(x, this.#transform, gpu || !this.#hasProduct ? new Float32Array(input) : buffer(ops.length, input)) : x);
    let owned = gpu || this.#transform !== null; // whether h is ours to overwrite (not the caller's input)
    if (gpu) h = keep(h.to(this.device));
    // ReLU/GELU after a product run as its options.activation (fuseActivations). The result of a product that a
    // later product reads goes to this run's scratch (on the CPU); the others are fresh (the caller keeps them).
    const product = async (x: Tensor, op: Product & { b: Tensor | null; out: number; activation?: Activation }, at: number): Promise<Tensor> => {
      const macs = productCost(x.shape[0], x.shape[1], op.out, op.s ? op.s.n / op.s.m : 1);
      let out: Tensor | undefined;
      if (!gpu && feeds[at]) out = new Tensor([x.shape[0], op.out], 'float32', buffer(at, x.shape[0] * op.out));
      const opts = { activation: op.activation, out };
      if (!gpu && await this.#inline(macs)) return op.s ? sparseLinear(x, op.s, op.b, opts) : linear(x, op.w, op.b, opts);
      // The caller's input, which the async product would copy into fresh memory (its page faults: 0.3 ms of the
      // MNIST MLP's 7 at 256 rows), is copied into this run's pinned buffer instead, unless it is pinned already.
      if (!gpu && !owned && x === h && !isPinned(x.storage())) {
        const copy = buffer(ops.length, x.size);
        copy.set(x.storage() as Float32Array);
        x = new Tensor(x.shape, 'float32', copy);
      }
      return op.s ? sparseLinearAsync(x, op.s, op.b, opts) : linearAsync(x, op.w, op.b, opts);
    };
    try {
      for (const [at, op] of ops.entries()) {
        switch (op.kind) {
          case 'linear': h = keep(await product(h, op, at)); owned = true; break;
          case 'conv': {
            // im2col (a memory pass, on this thread) then the product on the pool: [rows·oh·ow, kh·kw·ci] · Wᵀ
            const [, ih, iw] = h.shape;
            const cols = keep(im2col(h, op.window));
            const [kh, kw] = op.window.kernel, [sh, sw] = op.window.stride, [ph, pw] = op.window.padding;
            const oh = Math.floor((ih + 2 * ph - kh) / sh) + 1, ow = Math.floor((iw + 2 * pw - kw) / sw) + 1;
            h = keep(await product(cols, op, at)).reshape([rows, oh, ow, op.out]);
            owned = true;
            break;
          }
          case 'maxpool': h = keep(maxPoolForward(h, op.window).y); owned = true; break;
          case 'layernorm': h = keep(layerNormForward(h, op.gamma, op.beta, op.eps).y); owned = true; break;
          case 'reshape': h = h.reshape([rows, ...op.shape]); break;
          case 'relu': h = keep(reluForward(h, owned ? { out: h } : {})); owned = true; break;
          case 'gelu': h = keep(geluForward(h, owned ? { out: h } : {})); owned = true; break;
          case 'identity': break;
        }
      }
      return (gpu ? await h.data() : h.storage()) as Float32Array;
    } finally {
      for (const t of temps) t.dispose();
      this.#scratch.push(scratch);
    }
  }

  /**
   * #runRows for an MLP plan: runs of layers in one native call each. The layers run inline as linear() calls
   * would (each run within the inline budget, the loop turning between runs when it is spent), from the first
   * layer over SYNC_MACS on all the rest in one call off the event loop (its input in this run's pinned buffer,
   * unless it is pinned already).
   */
  async #runMlp(x: Float32Array, rows: number, plan: MlpPlan): Promise<Float32Array> {
    const w = plan.widths, L = w.length - 1;
    const macs = (i: number) => productCost(rows, w[i], w[i + 1], plan.density[i]);
    const scratch = this.#scratch.pop() ?? [];
    // this run's pinned buffer `at` (a layer's result; L: the input) of n floats, kept as #runRows' are
    const buffer = (at: number, n: number): Float32Array => {
      if (rows > this.#info.maxBatch && n > SCRATCH_FLOATS) return allocPinnedStorage('float32', n) as Float32Array;
      if (!(scratch[at]?.length >= n)) scratch[at] = allocPinnedStorage('float32', n) as Float32Array;
      return scratch[at].subarray(0, n);
    };
    try {
      let h = this.#transform ? standardize(x, this.#transform, buffer(L, rows * w[0])) : x;
      for (let first = 0; first < L;) {
        let last = first + 1, sum = macs(first);
        const async = sum > SYNC_MACS;
        if (async) last = L;
        else while (last < L && sum + macs(last) <= SYNC_MACS) sum += macs(last++);
        const out = last < L ? buffer(last - 1, rows * w[last]) : (async ? allocPinnedStorage('float32', rows * w[L]) : new Float32Array(rows * w[L])) as Float32Array;
        if (async) {
          if (h === x && !isPinned(x)) { h = buffer(L, x.length); h.set(x); }
          await plan.forwardAsync(h, rows, out, first, last);
        } else {
          await this.#inline(sum);
          plan.forward(h, rows, out, first, last);
        }
        h = out;
        first = last;
      }
      return h;
    } finally {
      this.#scratch.push(scratch);
    }
  }
}

/** (x − mean) / std of every value into y, as lib/data/mnist.ts normalize() computes it (bit for bit what training saw). */
function standardize(x: Float32Array, t: InputTransform, y: Float32Array): Float32Array {
  const inv = 1 / t.std;
  for (let i = 0; i < x.length; i++) y[i] = (x[i] - t.mean) * inv;
  return y;
}

/** Patterns a weight without a record is checked against, sparsest first (fewer position bits first on ties). */
const DETECTED: readonly Pattern[] = ['1:8', '1:4', '2:8', '3:8', '2:4', '4:8'].map((p) => parsePattern(p));

/**
 * The pattern a weight runs sparse with, or null for dense: the file's record; else `pattern` when the weight
 * (`grouped()`: N:M groups along its last dimension) satisfies it; else the sparsest of DETECTED it satisfies.
 */
function sparsePattern(mf: ModelFile, name: string, grouped: () => Tensor, pattern: Pattern | undefined, fits: (p: Pattern) => boolean): { p: Pattern; from: NonNullable<LayerInfo['patternFrom']> } | null {
  const rec = mf.sparsity[name];
  if (rec) return { p: parsePattern(rec.pattern), from: 'file' };
  if (pattern) return fits(pattern) && check(grouped(), pattern).ok ? { p: pattern, from: 'option' } : null;
  // check() stops at the first group over N, so a dense weight costs one group per pattern.
  for (const p of DETECTED) if (fits(p) && check(grouped(), p).ok) return { p, from: 'detected' };
  return null;
}

/**
 * Each ReLU/GELU that follows a product (Linear, Conv2d) becomes that product's `activation` option: fused into
 * the epilogue on a GPU, a pass over the fresh result on the CPU (no separate op, no extra result).
 */
function fuseActivations(ops: Op[]): void {
  for (let i = 1; i < ops.length; i++) {
    const op = ops[i], prev = ops[i - 1];
    if ((op.kind === 'relu' || op.kind === 'gelu') && (prev.kind === 'linear' || prev.kind === 'conv') && !prev.activation) {
      prev.activation = op.kind;
      ops.splice(i--, 1);
    }
  }
}

/** Layers an MLP is made of: what `arch: 'mlp'` accepts in a file that records its architecture. */
const MLP_LAYERS = new Set(['Linear', 'ReLU', 'GELU', 'Dropout', 'Flatten']);

/**
 * The file's own architecture when `arch: 'mlp'` is asked of a file that records one (nmsparse's checkpoints name
 * their layers fc1, fc2, …, which the state_dict naming does not match); null when it records none.
 */
function recordedMlp(arch: ArchSpec | null, where: string): ArchSpec | null {
  if (!arch) return null;
  const other = arch.layers.find((l) => !MLP_LAYERS.has(l.type));
  if (other) throw new NmSparseError('E_VALUE', `${where}: options.arch is 'mlp' (--arch mlp), but the file records an architecture with a ${other.type} layer: leave the option out to use it`);
  return arch;
}

function describeLayer(l: LayerSpec): string {
  return 'in' in l ? `${l.type} ${l.in} → ${l.out}` : l.type;
}

function checkOptions(opts: InferenceOptions): Required<Omit<InferenceOptions, 'arch' | 'pattern'>> & Pick<InferenceOptions, 'arch'> & { pattern?: Pattern } {
  if (opts === null || typeof opts !== 'object') fail('E_TYPE', 'options', opts, 'an object');
  const device = opts.device ?? 'cpu';
  if (!isDevice(device)) fail('E_DEVICE', 'options.device', device, "'cpu' or 'cuda'");
  const maxBatch = opts.maxBatch ?? 64;
  if (!isPosInt(maxBatch)) fail('E_VALUE', 'options.maxBatch', maxBatch, 'a positive integer');
  const maxDelayMs = opts.maxDelayMs ?? 0;
  if (typeof maxDelayMs !== 'number' || !Number.isFinite(maxDelayMs) || maxDelayMs < 0 || maxDelayMs > 60_000)
    fail('E_VALUE', 'options.maxDelayMs', maxDelayMs, 'a number of milliseconds in [0, 60000]');
  const sparse = opts.sparse ?? true;
  if (typeof sparse !== 'boolean') fail('E_TYPE', 'options.sparse', sparse, 'a boolean');
  const inputTransform = opts.inputTransform ?? true;
  if (typeof inputTransform !== 'boolean') fail('E_TYPE', 'options.inputTransform', inputTransform, 'a boolean');
  const arch = opts.arch;
  if (arch !== undefined && arch !== 'mlp' && (arch === null || typeof arch !== 'object'))
    fail('E_VALUE', 'options.arch', arch, "an architecture spec or 'mlp'");
  const pattern = opts.pattern === undefined ? undefined : parsePattern(opts.pattern, 'options.pattern');
  return { device, maxBatch, maxDelayMs, sparse, inputTransform, arch, pattern };
}
