/**
 * N:M masks (docs/design.md §5): groups are M consecutive elements along the last dimension; the mask keeps the N
 * largest |w| of each group, ties to the lower index, NaN counted as the largest magnitude.
 */
import { native } from './native.js';
import { NmSparseError, fail } from './errors.js';
import { deviceOp } from './device.js';
import { parsePattern, type Pattern } from './pattern.js';
import { Tensor, checkOptions, checkOut, checkTensor, outputFor } from './tensor.js';

export type PatternArg = Pattern | string;

/** Rows × cols view of `w` for an N:M op, with every shape rule checked. */
export function nmView(w: Tensor, p: Pattern, arg = 'w'): { rows: number; cols: number } {
  if (w.rank < 1 || w.size === 0) fail('E_SHAPE', arg, w, 'a non-empty tensor of rank >= 1');
  const cols = w.shape[w.rank - 1];
  if (cols % p.m !== 0)
    fail('E_SHAPE', arg, w, `a last dimension divisible by m = ${p.m} (groups of ${p.m} run along the last dimension)`);
  return { rows: w.size / cols, cols };
}

function prepare(w: unknown, pattern: unknown, arg = 'w') {
  const t = checkTensor(w, arg);
  const p = parsePattern(pattern);
  return { t, p, ...nmView(t, p, arg) };
}

/** uint8 mask, 1 where kept. */
export function mask(w: Tensor, pattern: PatternArg, options: { out?: Tensor } = {}): Tensor {
  const opts = checkOptions<{ out?: Tensor }>(options);
  const { t, p, rows, cols } = prepare(w, pattern);
  if (t.device !== 'cpu') return deviceOp(t.device, 'mask')(t, p, opts);
  const out = outputFor(checkOut(opts.out, t.shape, 'uint8', 'cpu'), t.shape, 'uint8');
  native.nmMask(t.storage(), t.dtypeCode, rows, cols, p.n, p.m, out.storage());
  return out;
}

/** w with the pruned elements set to 0 (same dtype). `out` may be `w` itself (in place). */
export function prune(w: Tensor, pattern: PatternArg, options: { out?: Tensor } = {}): Tensor {
  const opts = checkOptions<{ out?: Tensor }>(options);
  const { t, p, rows, cols } = prepare(w, pattern);
  if (t.device !== 'cpu') return deviceOp(t.device, 'prune')(t, p, opts);
  const out = outputFor(checkOut(opts.out, t.shape, t.dtype, 'cpu'), t.shape, t.dtype);
  native.nmPrune(t.storage(), t.dtypeCode, rows, cols, p.n, p.m, out.storage());
  return out;
}

export interface CheckResult {
  ok: boolean;
  /** The first group (row-major) with more than N non-zeros: its start index along each dimension. */
  firstViolation?: { index: number[]; group: number; nonzeros: number };
}

/** Whether every group of M holds at most N non-zeros (NaN counts as non-zero). */
export function check(w: Tensor, pattern: PatternArg): CheckResult {
  const { t, p, rows, cols } = prepare(w, pattern);
  if (t.device !== 'cpu') return deviceOp(t.device, 'check')(t, p);
  const r = native.nmCheck(t.storage(), t.dtypeCode, rows, cols, p.n, p.m);
  if (r === -1) return { ok: true };
  const [group, nonzeros] = r as [number, number];
  let flat = group * p.m;
  const index = new Array<number>(t.rank);
  for (let d = t.rank - 1; d >= 0; d--) {
    index[d] = flat % t.shape[d];
    flat = Math.floor(flat / t.shape[d]);
  }
  return { ok: false, firstViolation: { index, group, nonzeros } };
}

/** Throws E_NOT_NM unless `w` is N:M sparse. */
export function assertNM(w: Tensor, pattern: PatternArg, arg = 'w'): void {
  const r = check(w, pattern);
  if (!r.ok) {
    const v = r.firstViolation!;
    const p = parsePattern(pattern);
    throw new NmSparseError('E_NOT_NM', `${arg}: the group at [${v.index.join(', ')}] has ${v.nonzeros} non-zeros, expected at most ${p.n} in every group of ${p.m}`);
  }
}

/**
 * Transposable 2:4 mask of a 2-D tensor: in every 4×4 tile, two kept per row and per column, maximising the kept
 * |w| over the 90 valid patterns (ties: the first pattern in ascending order of its 16-bit code, bit r*4+c).
 */
export function transposableMask(w: Tensor, options: { out?: Tensor } = {}): Tensor {
  const opts = checkOptions<{ out?: Tensor }>(options);
  const t = checkTensor(w, 'w');
  if (t.rank !== 2 || t.shape[0] % 4 !== 0 || t.shape[1] % 4 !== 0 || t.size === 0)
    fail('E_SHAPE', 'w', t, 'a non-empty 2-D tensor whose dimensions are multiples of 4');
  if (t.device !== 'cpu') return deviceOp(t.device, 'transposableMask')(t, opts);
  const out = outputFor(checkOut(opts.out, t.shape, 'uint8', 'cpu'), t.shape, 'uint8');
  native.transposableMask(t.storage(), t.dtypeCode, t.shape[0], t.shape[1], out.storage());
  return out;
}

export interface SadResult {
  /** Positions whose kept/pruned state differs (‖E_a − E_b‖₁). */
  changed: number;
  /** changed / total. */
  fraction: number;
  total: number;
}

/** Sparse Architecture Divergence between two masks of the same shape (non-zero = kept). */
export function sad(a: Tensor, b: Tensor): SadResult {
  const ta = checkTensor(a, 'a'), tb = checkTensor(b, 'b');
  if (ta.dtype !== 'uint8') fail('E_DTYPE', 'a', ta, 'a uint8 mask');
  if (tb.dtype !== 'uint8') fail('E_DTYPE', 'b', tb, 'a uint8 mask');
  if (ta.shape.length !== tb.shape.length || ta.shape.some((d, i) => d !== tb.shape[i]))
    fail('E_SHAPE', 'b', tb, `a mask of the same shape as a, [${ta.shape.join(', ')}]`);
  if (ta.device !== tb.device) fail('E_DEVICE', 'b', tb, `a mask on '${ta.device}' like a`);
  if (ta.size === 0) fail('E_SHAPE', 'a', ta, 'a non-empty mask');
  if (ta.device !== 'cpu') return deviceOp(ta.device, 'sad')(ta, tb);
  const changed = native.maskSad(ta.storage(), tb.storage()) as number;
  return { changed, fraction: changed / ta.size, total: ta.size };
}
