import { NmSparseError } from './errors.js';

/** Element types. The numeric codes are the native contract (native/core/dtype.h). */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'int8' | 'uint8';

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'int8', 'uint8'];

/** Storage of each dtype: float16 and bfloat16 are raw 16-bit patterns in a Uint16Array. */
export type Storage = Float32Array | Uint16Array | Int8Array | Uint8Array;

export const dtypeCode = (d: DType): number => DTYPES.indexOf(d);
export const dtypeBytes = (d: DType): number => (d === 'float32' ? 4 : d === 'float16' || d === 'bfloat16' ? 2 : 1);
export const isFloat = (d: DType): boolean => d === 'float32' || d === 'float16' || d === 'bfloat16';
export const isDType = (d: unknown): d is DType => typeof d === 'string' && (DTYPES as readonly string[]).includes(d);

export function allocStorage(d: DType, count: number): Storage {
  try {
    switch (d) {
      case 'float32': return new Float32Array(count);
      case 'float16': case 'bfloat16': return new Uint16Array(count);
      case 'int8': return new Int8Array(count);
      case 'uint8': return new Uint8Array(count);
    }
  } catch (e) {
    // V8 throws RangeError for lengths past its TypedArray limit and for allocations it cannot make.
    if (e instanceof RangeError)
      throw new NmSparseError('E_OOM', `cannot allocate ${count} ${d} elements (${count * dtypeBytes(d)} bytes): ${e.message}`, { cause: e });
    throw e;
  }
}

/** True when `a` is the storage class of dtype `d`. */
export function storageMatches(d: DType, a: ArrayBufferView): boolean {
  switch (d) {
    case 'float32': return a instanceof Float32Array;
    case 'float16': case 'bfloat16': return a instanceof Uint16Array;
    case 'int8': return a instanceof Int8Array;
    case 'uint8': return a instanceof Uint8Array;
  }
}
