/**
 * Tensor: a shape, a dtype and a device. CPU tensors own a TypedArray (`storage()`, zero-copy for the kernels);
 * tensors on 'cuda' own device memory through a native handle. Row-major, like PyTorch.
 */
import { native } from './native.js';
import { allocPinnedStorage, allocStorage, copyStorage, dtypeBytes, dtypeCode, isDType, isFloat, storageMatches, type DType, type Storage } from './dtype.js';
import { backendFor, deviceOp, isDevice, type Device, type DeviceStorage } from './device.js';
import { NmSparseError, describe, fail } from './errors.js';
import { Rng, randomSeed } from './random.js';

export type Shape = readonly number[];

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
}

/** Validates a shape: an array of non-negative safe integers. */
export function checkShape(shape: unknown, arg = 'shape'): number[] {
  if (!Array.isArray(shape)) fail('E_SHAPE', arg, shape, 'an array of non-negative integers');
  for (const d of shape)
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)
      fail('E_SHAPE', arg, shape, 'an array of non-negative integers');
  const n = shape.reduce((a: number, b: number) => a * b, 1);
  if (!Number.isSafeInteger(n) || n > 2 ** 40) fail('E_SHAPE', arg, shape, `at most 2^40 elements`);
  return [...shape];
}

export const numel = (shape: Shape): number => shape.reduce((a, b) => a * b, 1);

/** `opts` as an object ({} when undefined). */
export function checkOptions<T extends object>(opts: unknown, arg = 'options'): Partial<T> {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) fail('E_TYPE', arg, opts, 'an options object');
  return opts as Partial<T>;
}

function checkDType(d: unknown, arg = 'dtype'): DType {
  if (!isDType(d)) fail('E_DTYPE', arg, d, "one of 'float32', 'float16', 'bfloat16', 'int8', 'uint8'");
  return d;
}

function checkDevice(d: unknown, arg = 'device'): Device {
  if (!isDevice(d)) fail('E_DEVICE', arg, d, "'cpu' or 'cuda'");
  return d;
}

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: Device;
  #host: Storage | null;
  #dev: DeviceStorage | null;

  /** Low-level: wraps storage without copying. Use tensor(), zeros(), randn()… to make tensors. */
  constructor(shape: Shape, dtype: DType, storage: Storage | DeviceStorage, device: Device = 'cpu') {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.device = device;
    if (device === 'cpu') {
      if (!ArrayBuffer.isView(storage) || !storageMatches(dtype, storage) || (storage as Storage).length !== numel(shape))
        fail('E_SHAPE', 'storage', storage, `a ${dtype} storage array of ${numel(shape)} elements`);
      // Shared and resizable memory can change under a running kernel (another thread writes, resize() unmaps
      // pages), so tensors only wrap plain ArrayBuffers.
      const buf = (storage as Storage).buffer as ArrayBufferLike & { resizable?: boolean };
      if (buf instanceof SharedArrayBuffer || buf.resizable)
        fail('E_TYPE', 'storage', storage, `a TypedArray on a plain ArrayBuffer (not a ${buf.resizable ? 'resizable ArrayBuffer' : 'SharedArrayBuffer'}; copy it with .slice())`);
      this.#host = storage as Storage;
      this.#dev = null;
    } else {
      this.#host = null;
      this.#dev = storage as DeviceStorage;
    }
  }

  get size(): number { return numel(this.shape); }
  get rank(): number { return this.shape.length; }
  get dtypeCode(): number { return dtypeCode(this.dtype); }
  get bytes(): number { return this.size * dtypeBytes(this.dtype); }
  get disposed(): boolean { return this.device === 'cpu' ? this.#host === null : this.#dev === null || this.#dev.disposed; }

  /** `float32 tensor [3, 5] on cpu` (for messages). */
  describe(): string {
    return `${this.disposed ? 'disposed ' : ''}${this.dtype} tensor [${this.shape.join(', ')}]${this.device === 'cpu' ? '' : ` on ${this.device}`}`;
  }
  toString(): string { return `Tensor(${this.describe()})`; }

  #alive(arg: string): void {
    if (this.disposed) throw new NmSparseError('E_DISPOSED', `${arg}: the tensor was disposed`);
    // A detached buffer (transferred to a worker or structuredClone'd with transfer) reads as length 0.
    if (this.#host !== null && this.#host.length !== this.size)
      throw new NmSparseError('E_DISPOSED', `${arg}: the tensor's buffer was detached (transferred) after the tensor was made`);
  }

  /** The host TypedArray of a CPU tensor (no copy: writes change the tensor). */
  storage(arg = 'tensor'): Storage {
    this.#alive(arg);
    if (this.#host === null) fail('E_DEVICE', arg, this, "a tensor on 'cpu' (call .to('cpu') first)");
    return this.#host;
  }

  /** The device memory of a tensor that is not on the CPU. */
  deviceStorage(arg = 'tensor'): DeviceStorage {
    this.#alive(arg);
    if (this.#dev === null) fail('E_DEVICE', arg, this, 'a tensor on a GPU device');
    return this.#dev;
  }

  /** Same data, new shape (one entry may be -1). Shares storage with this tensor. */
  reshape(...shape: number[] | [number[]]): Tensor {
    this.#alive('reshape');
    const s: number[] = Array.isArray(shape[0]) ? [...shape[0]] : (shape as number[]);
    const free = s.indexOf(-1);
    if (free >= 0 && s.indexOf(-1, free + 1) < 0) {
      const rest = numel(s.filter((_, i) => i !== free));
      if (rest > 0 && this.size % rest === 0) s[free] = this.size / rest;
    }
    const checked = checkShape(s, 'reshape(shape)');
    if (numel(checked) !== this.size)
      fail('E_SHAPE', 'reshape(shape)', s, `a shape of ${this.size} elements like [${this.shape.join(', ')}]`);
    return new Tensor(checked, this.dtype, this.#host ?? this.#dev!, this.device);
  }

  /** Transpose of a 2-D tensor (a copy); for rank > 2, swaps the last two dimensions. */
  transpose(): Tensor {
    this.#alive('transpose');
    if (this.rank < 2) fail('E_SHAPE', 'transpose', this, 'a tensor of rank >= 2');
    const rows = this.shape[this.rank - 2], cols = this.shape[this.rank - 1];
    const shape = [...this.shape.slice(0, -2), cols, rows];
    if (this.device !== 'cpu') return this.to('cpu').transpose().to(this.device);
    const out = allocStorage(this.dtype, this.size);
    native.transpose2d(this.#host!, this.dtypeCode, this.size / (rows * cols || 1), rows, cols, out);
    return new Tensor(shape, this.dtype, out);
  }

  /** A copy converted to `dtype` (floats round to nearest even; integers round and saturate). */
  astype(dtype: DType): Tensor {
    this.#alive('astype');
    checkDType(dtype, 'astype(dtype)');
    if (this.device !== 'cpu') {
      // Between float dtypes the device's cast op (the one mixed-precision training uses) converts in place on the
      // device; other conversions go through the host.
      if (isFloat(this.dtype) && isFloat(dtype)) return deviceOp(this.device, 'cast')(this, dtype, {});
      return this.to('cpu').astype(dtype).to(this.device);
    }
    const out = allocStorage(dtype, this.size);
    native.convert(this.#host!, this.dtypeCode, out, dtypeCode(dtype), this.size);
    return new Tensor(this.shape, dtype, out);
  }

  /** A copy on `device` (the same tensor object is never returned, so dispose() stays per tensor). */
  to(device: Device): Tensor {
    this.#alive('to');
    checkDevice(device, 'to(device)');
    if (device === 'cpu') {
      if (this.device === 'cpu') return this.clone();
      const out = allocStorage(this.dtype, this.size);
      backendFor(this.device).download(this.#dev!, out);
      return new Tensor(this.shape, this.dtype, out);
    }
    const b = backendFor(device, 'to(device)');
    if (this.device === 'cpu') return new Tensor(this.shape, this.dtype, b.upload(this.#host!, this.dtypeCode), device);
    return this.device === device ? this.clone() : this.to('cpu').to(device);
  }

  clone(): Tensor {
    this.#alive('clone');
    if (this.device !== 'cpu') return new Tensor(this.shape, this.dtype, backendFor(this.device).copy(this.#dev!), this.device);
    return new Tensor(this.shape, this.dtype, copyStorage(this.dtype, this.#host!));
  }

  /** A copy of the elements as a TypedArray (float16/bfloat16: raw 16-bit patterns). Blocks on a GPU. */
  dataSync(): Storage {
    this.#alive('dataSync');
    if (this.device === 'cpu') return this.#host!.slice();
    const out = allocStorage(this.dtype, this.size);
    backendFor(this.device).download(this.#dev!, out);
    return out;
  }

  /** Like dataSync(), but waits for the GPU off the main thread. */
  async data(): Promise<Storage> {
    this.#alive('data');
    if (this.device === 'cpu') return this.#host!.slice();
    const out = allocStorage(this.dtype, this.size);
    await backendFor(this.device).downloadAsync(this.#dev!, out);
    return out;
  }

  /** The elements as JavaScript numbers, flat, in row-major order (float16/bfloat16 decoded). */
  toArray(): number[] {
    this.#alive('toArray');
    const src = this.device === 'cpu' ? this.#host! : this.dataSync();
    if (this.dtype !== 'float16' && this.dtype !== 'bfloat16') return Array.from(src);
    const f = new Float32Array(this.size);
    native.convert(src, this.dtypeCode, f, 0, this.size);
    return Array.from(f);
  }

  /** Frees the memory now (device memory at once; host memory when unreferenced). Idempotent. */
  dispose(): void {
    if (this.#dev && !this.#dev.disposed) this.#dev.dispose();
    this.#host = null;
    this.#dev = null;
  }
  [Symbol.dispose](): void { this.dispose(); }
}

/** Throws unless `t` is a live Tensor. */
export function checkTensor(t: unknown, arg: string): Tensor {
  if (!(t instanceof Tensor)) fail('E_TYPE', arg, t, 'a Tensor');
  if (t.disposed) throw new NmSparseError('E_DISPOSED', `${arg}: the tensor was disposed`);
  return t;
}

/** A number or a nested array of numbers (tensor() input). */
export type Nested = number | Nested[];

function flatten(data: Nested[], shape: number[], depth: number, out: number[], arg: string): void {
  if (depth === shape.length - 1) {
    for (const v of data) {
      if (typeof v !== 'number') fail('E_SHAPE', arg, data, `a nested array of numbers of shape [${shape.join(', ')}]`);
      out.push(v);
    }
    return;
  }
  for (const row of data) {
    if (!Array.isArray(row) || row.length !== shape[depth + 1])
      fail('E_SHAPE', arg, row, `an array of length ${shape[depth + 1]} (ragged nested arrays are not allowed)`);
    flatten(row, shape, depth + 1, out, arg);
  }
}

function inferShape(data: Nested[]): number[] {
  const shape: number[] = [];
  let cur: Nested = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
    if (cur === undefined) break;
  }
  return shape;
}

function fromNumbers(values: ArrayLike<number>, shape: number[], dtype: DType): Tensor {
  const out = allocStorage(dtype, values.length);
  if (dtype === 'float32') (out as Float32Array).set(values);
  else native.convert(Float32Array.from(values), 0, out, dtypeCode(dtype), values.length);
  return new Tensor(shape, dtype, out);
}

/**
 * A tensor from numbers: a flat or nested array, or a TypedArray. A TypedArray of the dtype's storage class
 * (Uint16Array for float16/bfloat16) is taken as raw elements; anything else as numeric values, converted.
 * The data is always copied. `shape` defaults to the nested array's shape (or [length]).
 */
export function tensor(data: ArrayLike<number> | Nested[], shape?: Shape, options: TensorOptions = {}): Tensor {
  const opts = checkOptions<TensorOptions>(options);
  const dtype = checkDType(opts.dtype ?? 'float32', 'options.dtype');
  const device = checkDevice(opts.device ?? 'cpu', 'options.device');
  let flat: ArrayLike<number>;
  let inferred: number[];
  if (ArrayBuffer.isView(data)) {
    if (data instanceof DataView || data instanceof BigInt64Array || data instanceof BigUint64Array)
      fail('E_TYPE', 'data', data, 'a TypedArray of numbers (not BigInt or DataView)');
    flat = data as unknown as ArrayLike<number>;
    inferred = [flat.length];
  } else if (Array.isArray(data)) {
    inferred = inferShape(data as Nested[]);
    if (inferred.length <= 1) {
      for (const v of data) if (typeof v !== 'number') fail('E_TYPE', 'data', data, 'numbers or nested arrays of numbers');
      flat = data as number[];
    } else {
      const out: number[] = [];
      flatten(data as Nested[], inferred, 0, out, 'data');
      flat = out;
    }
  } else {
    fail('E_TYPE', 'data', data, 'an array of numbers, a nested array or a TypedArray');
  }
  const s = shape === undefined ? inferred : checkShape(shape, 'shape');
  if (numel(s) !== flat.length) fail('E_SHAPE', 'shape', shape, `a shape of ${flat.length} elements (the data's length)`);
  let t: Tensor;
  if (ArrayBuffer.isView(data) && storageMatches(dtype, data)) t = new Tensor(s, dtype, copyStorage(dtype, data as unknown as Storage));
  else t = fromNumbers(flat, s, dtype);
  return device === 'cpu' ? t : moveAndDispose(t, device);
}

function moveAndDispose(t: Tensor, device: Device): Tensor {
  const d = t.to(device);
  t.dispose();
  return d;
}

export function zeros(shape: Shape, opts: TensorOptions = {}): Tensor {
  return full(shape, 0, opts);
}

export function ones(shape: Shape, opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}

export function full(shape: Shape, value: number, options: TensorOptions = {}): Tensor {
  const s = checkShape(shape);
  const opts = checkOptions<TensorOptions>(options);
  const dtype = checkDType(opts.dtype ?? 'float32', 'options.dtype');
  const device = checkDevice(opts.device ?? 'cpu', 'options.device');
  if (typeof value !== 'number') fail('E_TYPE', 'value', value, 'a number');
  const out = allocStorage(dtype, numel(s));
  if (value !== 0) {
    const one = fromNumbers([value], [1], dtype).storage();
    (out as { fill(v: number): unknown }).fill(one[0]);
  }
  const t = new Tensor(s, dtype, out);
  return device === 'cpu' ? t : moveAndDispose(t, device);
}

export interface RandomOptions extends TensorOptions {
  /** Same seed, same values on every machine. Default: a random seed. */
  seed?: number;
}

function checkSeed(seed: unknown): number {
  if (seed === undefined) return randomSeed();
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) fail('E_VALUE', 'options.seed', seed, 'an integer');
  return seed;
}

function randomTensor(shape: Shape, opts: RandomOptions, draw: (rng: Rng) => number): Tensor {
  const s = checkShape(shape);
  const dtype = checkDType(opts.dtype ?? 'float32', 'options.dtype');
  checkDevice(opts.device ?? 'cpu', 'options.device');
  const rng = new Rng(checkSeed(opts.seed));
  const f = allocStorage('float32', numel(s)) as Float32Array;
  for (let i = 0; i < f.length; i++) f[i] = draw(rng);
  const t = dtype === 'float32' ? new Tensor(s, dtype, f) : fromNumbers(f, s, dtype);
  return (opts.device ?? 'cpu') === 'cpu' ? t : moveAndDispose(t, opts.device!);
}

/** Normal(mean, std) samples. */
export function randn(shape: Shape, options: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  const opts = checkOptions<RandomOptions & { mean?: number; std?: number }>(options);
  const mean = opts.mean ?? 0, std = opts.std ?? 1;
  if (!Number.isFinite(mean)) fail('E_VALUE', 'options.mean', mean, 'a finite number');
  if (!Number.isFinite(std) || std < 0) fail('E_VALUE', 'options.std', std, 'a finite number >= 0');
  return randomTensor(shape, opts, (r) => mean + std * r.normal());
}

/** Uniform samples in [low, high). */
export function rand(shape: Shape, options: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  const opts = checkOptions<RandomOptions & { low?: number; high?: number }>(options);
  const low = opts.low ?? 0, high = opts.high ?? 1;
  if (!Number.isFinite(low) || !Number.isFinite(high) || high < low)
    fail('E_VALUE', 'options.low/high', [low, high], 'finite numbers with low <= high');
  return randomTensor(shape, opts, (r) => low + (high - low) * r.next());
}

export { describe };

/** Validates an optional `out` tensor: live, on `device`, with exactly `shape` and `dtype`. */
export function checkOut(out: unknown, shape: Shape, dtype: DType, device: Device, arg = 'options.out'): Tensor | undefined {
  if (out === undefined || out === null) return undefined;
  const t = checkTensor(out, arg);
  if (t.dtype !== dtype) fail('E_DTYPE', arg, t, `a ${dtype} tensor`);
  if (t.device !== device) fail('E_DEVICE', arg, t, `a tensor on '${device}'`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    fail('E_SHAPE', arg, t, `a tensor of shape [${shape.join(', ')}]`);
  return t;
}

/**
 * A fresh CPU tensor of `shape`/`dtype` (zeros), or `out` when given (already validated). `pinned`: storage an
 * async op pins rather than copies (lib/dtype.ts allocPinnedStorage), for the results of async ops and weights.
 */
export function outputFor(out: Tensor | undefined, shape: Shape, dtype: DType, pinned = false): Tensor {
  return out ?? new Tensor(shape, dtype, (pinned ? allocPinnedStorage : allocStorage)(dtype, numel(shape)));
}
