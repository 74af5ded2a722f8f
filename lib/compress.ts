/**
 * SparseTensor: a tensor pruned to N:M and stored compressed. On the CPU it holds the portable form
 * (docs/design.md §5): `values` [..., cols·N/M] in the tensor's dtype plus the log2(M)-bit position of each kept value
 * inside its group. On 'cuda' it holds the device form (the cuSPARSELt compressed buffer), opaque and per GPU.
 */
import { native } from './native.js';
import { NmSparseError, fail } from './errors.js';
import { deviceOp, type Device, type DeviceStorage } from './device.js';
import { allocPinnedStorage, dtypeBytes, type DType } from './dtype.js';
import { parsePattern, patternString, type Pattern } from './pattern.js';
import { nmView, type PatternArg } from './mask.js';
import { Tensor, checkOptions, checkOut, checkShape, checkTensor, numel, outputFor } from './tensor.js';
import { sparseMatmul, sparseMatmulAsync, type SparseMatmulOptions } from './spmm.js';

/** Passed by compress() and loadModel(), whose parts are already checked, so the constructor skips its checks. */
export const CHECKED = Symbol('nmsparse.checked');

/**
 * The first [row, group] of packed positions `pos` whose positions are not strictly ascending (the format's
 * contract: decompress and the products rely on it), or null. `rows` rows of `kept` values, `rowBytes` each.
 */
export function badPositions(pos: Uint8Array, rows: number, kept: number, rowBytes: number, p: Pattern): [number, number] | null {
  const bits = Math.log2(p.m), maskBits = (1 << bits) - 1;
  for (let r = 0; r < rows; r++) {
    const base = r * rowBytes * 8;
    let prev = -1;
    for (let j = 0; j < kept; j++) {
      const bit = base + j * bits, byte = bit >>> 3, sh = bit & 7;
      const word = pos[byte] | ((sh + bits > 8 ? pos[byte + 1] : 0) << 8);
      const v = (word >>> sh) & maskBits;
      if (j % p.n === 0) prev = -1;
      if (v <= prev) return [r, Math.floor(j / p.n)];
      prev = v;
    }
  }
  return null;
}

export class SparseTensor {
  /** Shape of the dense tensor it stands for. */
  readonly shape: readonly number[];
  readonly n: number;
  readonly m: number;
  readonly dtype: DType;
  readonly device: Device;
  #values: Tensor | null;
  #positions: Uint8Array | null;
  #device: DeviceStorage | null;

  /**
   * Low-level. CPU: `values` and `positions` in the portable form (see compress()). Device: `handle`, the opaque
   * device form made by that device's backend.
   */
  constructor(shape: readonly number[], pattern: Pattern, dtype: DType, parts: { values: Tensor; positions: Uint8Array } | { device: Device; handle: DeviceStorage }, checked?: typeof CHECKED) {
    // Crafted CPU parts are checked like a file's: a corrupt position would decompress or multiply into a
    // silently different result.
    if (checked !== CHECKED && 'values' in parts) checkParts(shape, pattern, dtype, parts);
    this.shape = Object.freeze([...shape]);
    this.n = pattern.n;
    this.m = pattern.m;
    this.dtype = dtype;
    if ('values' in parts) {
      this.device = 'cpu';
      this.#values = parts.values;
      this.#positions = parts.positions;
      this.#device = null;
    } else {
      this.device = parts.device;
      this.#values = null;
      this.#positions = null;
      this.#device = parts.handle;
    }
  }

  get pattern(): Pattern { return { n: this.n, m: this.m }; }
  get rows(): number { return numel(this.shape) / this.cols; }
  get cols(): number { return this.shape[this.shape.length - 1]; }
  get disposed(): boolean { return this.device === 'cpu' ? this.#values === null : this.#device === null || this.#device.disposed; }

  describe(): string {
    return `${this.disposed ? 'disposed ' : ''}${patternString(this)} sparse ${this.dtype} tensor [${this.shape.join(', ')}]${this.device === 'cpu' ? '' : ` on ${this.device}`}`;
  }
  toString(): string { return `SparseTensor(${this.describe()})`; }

  #alive(arg: string): void {
    if (this.disposed) throw new NmSparseError('E_DISPOSED', `${arg}: the sparse tensor was disposed`);
  }

  /** Kept values, [..., cols·N/M] (CPU form). */
  get values(): Tensor {
    this.#alive('values');
    if (!this.#values) fail('E_DEVICE', 'values', this, "a SparseTensor on 'cpu' (the device form is opaque)");
    return this.#values;
  }

  /** Packed positions: log2(M) bits per kept value, little-endian, each row starting on a byte (CPU form). */
  get positions(): Uint8Array {
    this.#alive('positions');
    if (!this.#positions) fail('E_DEVICE', 'positions', this, "a SparseTensor on 'cpu' (the device form is opaque)");
    return this.#positions;
  }

  /** The opaque device form (device tensors only). */
  get handle(): DeviceStorage {
    this.#alive('handle');
    if (!this.#device) fail('E_DEVICE', 'handle', this, 'a SparseTensor on a GPU device');
    return this.#device;
  }

  /** Bytes held: values plus packed positions (CPU), or the device buffer. */
  get bytes(): number {
    this.#alive('bytes');
    return this.#device ? this.#device.bytes : this.#values!.bytes + this.#positions!.byteLength;
  }

  /** Bytes of the dense tensor it stands for. */
  get denseBytes(): number { return numel(this.shape) * dtypeBytes(this.dtype); }

  /** The dense pruned tensor: decompress(compress(w)) equals prune(w) bit for bit. */
  decompress(options: { out?: Tensor } = {}): Tensor {
    this.#alive('decompress');
    const opts = checkOptions<{ out?: Tensor }>(options);
    if (this.device !== 'cpu') return deviceOp(this.device, 'decompress')(this, opts);
    // Pinned: the dense copy of a compressed weight is long-lived and read by async products (a copy per call else).
    const out = outputFor(checkOut(opts.out, this.shape, this.dtype, 'cpu'), this.shape, this.dtype, true);
    native.nmDecompress({
      values: this.#values!.storage(), positions: this.#positions!, dtype: this.#values!.dtypeCode, rows: this.rows, cols: this.cols,
      n: this.n, m: this.m, out: out.storage(),
    });
    return out;
  }

  /** A copy on `device` (exact: the kept values and their positions move as they are). */
  to(device: Device): SparseTensor {
    this.#alive('to');
    if (device === 'cpu' && this.device === 'cpu')
      return new SparseTensor(this.shape, this.pattern, this.dtype, { values: this.#values!.clone(), positions: this.#positions!.slice() });
    if (device === 'cpu') return deviceOp(this.device, 'sparseToCpu')(this);
    if (this.device === 'cpu') return deviceOp(device, 'sparseFromCpu')(this);
    const host = this.to('cpu');
    try {
      return host.to(device);
    } finally {
      host.dispose();
    }
  }

  /** y = W̃·b (+ bias per row), straight from the compressed form. */
  matmul(b: Tensor, opts: SparseMatmulOptions = {}): Tensor {
    return sparseMatmul(this, b, opts);
  }

  /** matmul() on the thread pool (CPU) or off the main thread (GPU); the event loop stays free. */
  matmulAsync(b: Tensor, opts: SparseMatmulOptions = {}): Promise<Tensor> {
    return sparseMatmulAsync(this, b, opts);
  }

  dispose(): void {
    this.#values?.dispose();
    if (this.#device && !this.#device.disposed) this.#device.dispose();
    this.#values = null;
    this.#positions = null;
    this.#device = null;
  }
  [Symbol.dispose](): void { this.dispose(); }
}

function checkParts(shape: unknown, pattern: unknown, dtype: DType, parts: { values: unknown; positions: unknown }): void {
  const s = checkShape(shape, 'shape');
  const p = parsePattern(pattern);
  const cols = s[s.length - 1] ?? 0;
  if (s.length < 1 || cols % p.m !== 0) fail('E_SHAPE', 'shape', shape, `a shape whose last dimension is a multiple of ${p.m}`);
  const kept = (cols / p.m) * p.n, rows = cols === 0 ? 0 : numel(s) / cols;
  const v = checkTensor(parts.values, 'parts.values');
  const want = [...s.slice(0, -1), kept];
  if (v.device !== 'cpu' || v.dtype !== dtype || v.rank !== want.length || v.shape.some((d, i) => d !== want[i]))
    fail('E_SHAPE', 'parts.values', v, `a ${dtype} tensor [${want.join(', ')}] on 'cpu'`);
  const rowBytes = Math.ceil((kept * Math.log2(p.m)) / 8);
  const pos = parts.positions;
  if (!(pos instanceof Uint8Array) || pos.length !== rows * rowBytes)
    fail('E_SHAPE', 'parts.positions', pos, `a Uint8Array of ${rows * rowBytes} bytes (${rows} rows of ${rowBytes})`);
  const bad = badPositions(pos, rows, kept, rowBytes, p);
  if (bad) fail('E_VALUE', 'parts.positions', pos, `positions strictly ascending in every group (row ${bad[0]}, group ${bad[1]} is not)`);
}

/** Throws unless `s` is a live SparseTensor. */
export function checkSparse(s: unknown, arg: string): SparseTensor {
  if (!(s instanceof SparseTensor)) fail('E_TYPE', arg, s, 'a SparseTensor (from nm.compress)');
  if (s.disposed) throw new NmSparseError('E_DISPOSED', `${arg}: the sparse tensor was disposed`);
  return s;
}

/** Prunes `w` to N:M (its N:M mask) and compresses it. */
export function compress(w: Tensor, pattern: PatternArg): SparseTensor {
  const t = checkTensor(w, 'w');
  const p = parsePattern(pattern);
  const { rows, cols } = nmView(t, p);
  if (t.device !== 'cpu') return deviceOp(t.device, 'compress')(t, p);
  // Pinned: a compressed weight is long-lived and what async products read most.
  const values = outputFor(undefined, [...t.shape.slice(0, -1), (cols / p.m) * p.n], t.dtype, true);
  const positions = allocPinnedStorage('uint8', native.nmPositionBytes(rows, cols, p.n, p.m) as number) as Uint8Array;
  native.nmCompress({ w: t.storage(), dtype: t.dtypeCode, rows, cols, n: p.n, m: p.m, values: values.storage(), positions });
  return new SparseTensor(t.shape, p, t.dtype, { values, positions }, CHECKED);
}
