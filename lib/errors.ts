/** Stable error codes. The message names the argument, what it got and what it expected. */
export type ErrorCode =
  | 'E_SHAPE' // wrong rank or shape, or sizes that do not agree
  | 'E_DTYPE' // unsupported dtype, or dtypes that do not match
  | 'E_DEVICE' // tensors on different devices, or a device that is not available
  | 'E_NOT_NM' // a tensor that must be N:M sparse is not
  | 'E_PATTERN' // an N:M pattern that is not supported (N >= M, M not in {4, 8, 16, 32}, …)
  | 'E_DISPOSED' // use after dispose()
  | 'E_VALUE' // a number out of range, or a value of the wrong kind
  | 'E_TYPE' // an argument of the wrong JavaScript type
  | 'E_CUDA' // a CUDA runtime call failed
  | 'E_CUSPARSELT' // a cuSPARSELt call failed
  | 'E_CUBLAS' // a cuBLASLt call failed
  | 'E_OOM' // out of host or device memory
  | 'E_IO' // a file could not be read or written, or is malformed
  | 'E_UNSUPPORTED' // valid input that this backend cannot run
  | 'E_INTERNAL'; // a bug: please report it

export class NmSparseError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NmSparseError';
    this.code = code;
  }
}

/** Short description of a value for error messages: `float32 tensor [3, 5]`, `"abc"`, `NaN`, `[1, 2]`. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return v.length > 8 ? `array of ${v.length}` : `[${v.map(describe).join(', ')}]`;
  const d = (v as { describe?: () => string }).describe;
  if (typeof d === 'function') return d.call(v);
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as ArrayLike<unknown>).length})`;
  return typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
}

/** Throws NmSparseError(code, `${arg}: got ${describe(got)}, expected ${expected}`). */
export function fail(code: ErrorCode, arg: string, got: unknown, expected: string): never {
  throw new NmSparseError(code, `${arg}: got ${describe(got)}, expected ${expected}`);
}
