import { constants } from 'node:buffer';
import { NmSparseError } from './errors.js';
import { native } from './native.js';

// V8's longest TypedArray, in elements (Node 20: 2^32).
const MAX_LENGTH = constants.MAX_LENGTH;

/** Element types. The numeric codes are the native contract (native/core/dtype.h). */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'int8' | 'uint8';

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16', 'int8', 'uint8'];

/** Storage of each dtype: float16 and bfloat16 are raw 16-bit patterns in a Uint16Array. */
export type Storage = Float32Array | Uint16Array | Int8Array | Uint8Array;

export const dtypeCode = (d: DType): number => DTYPES.indexOf(d);
export const dtypeBytes = (d: DType): number => (d === 'float32' ? 4 : d === 'float16' || d === 'bfloat16' ? 2 : 1);
export const isFloat = (d: DType): boolean => d === 'float32' || d === 'float16' || d === 'bfloat16';
export const isDType = (d: unknown): d is DType => typeof d === 'string' && (DTYPES as readonly string[]).includes(d);

/** Zeroed storage for `count` elements of `d`; E_OOM past V8's TypedArray length limit. */
export function allocStorage(d: DType, count: number): Storage {
  checkLength(d, count);
  switch (d) {
    case 'float32': return new Float32Array(count);
    case 'float16': case 'bfloat16': return new Uint16Array(count);
    case 'int8': return new Int8Array(count);
    case 'uint8': return new Uint8Array(count);
  }
}

// Below this, V8 allocates faster (about 1 µs against 10 µs for an external buffer) and an async op's copy of
// the bytes costs less than pinning them.
const PINNED_BYTES = 64 << 10;

/**
 * Like allocStorage, but from PINNED_BYTES up in native memory (native/napi/storage.cc) that async ops pin while
 * they run instead of copying it: for weights and async results. Not the default, because Node frees external
 * memory only when the event loop turns (its finalizers run as immediates): a synchronous loop making such
 * tensors would pile them up, where V8's own buffers go at the next GC.
 */
export function allocPinnedStorage(d: DType, count: number): Storage {
  const bytes = count * dtypeBytes(d);
  if (bytes < PINNED_BYTES) return allocStorage(d, count);
  checkLength(d, count);
  const ab = native.allocBuffer(bytes) as ArrayBuffer;
  pinnedBuffers.add(ab);
  switch (d) {
    case 'float32': return new Float32Array(ab);
    case 'float16': case 'bfloat16': return new Uint16Array(ab);
    case 'int8': return new Int8Array(ab);
    case 'uint8': return new Uint8Array(ab);
  }
}

// The ArrayBuffers allocPinnedStorage made (Node never detaches them: a transfer copies them instead).
const pinnedBuffers = new WeakSet<ArrayBufferLike>();

/**
 * Whether `a` lies in storage from allocPinnedStorage's native memory, which an async op pins instead of copying:
 * a caller's own copy of it into other pinned memory would only add one. (The op decides for itself, napi/args.cc
 * Holds, so a wrong answer here costs a copy, never safety.)
 */
export function isPinned(a: ArrayBufferView): boolean {
  return pinnedBuffers.has(a.buffer);
}

function checkLength(d: DType, count: number): void {
  if (count > MAX_LENGTH)
    throw new NmSparseError('E_OOM', `cannot allocate ${count} ${d} elements (${count * dtypeBytes(d)} bytes): a TypedArray holds at most ${MAX_LENGTH} elements`);
}

/** A copy of `s` in storage from allocStorage. */
export function copyStorage(d: DType, s: Storage): Storage {
  const out = allocStorage(d, s.length);
  out.set(s as never);
  return out;
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
