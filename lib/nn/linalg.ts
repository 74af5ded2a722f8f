/**
 * The one place the training stack multiplies matrices. Every module calls these three functions, so switching
 * the implementation (CPU GEMM, sparse GEMM, a GPU backend) happens here and nowhere else.
 *   linearForward(x, W, b)  y  = x·Wᵀ + b     x [rows, in], W [out, in]
 *   matmulNN(a, b)          c  = a·b          a [m, k], b [k, n]     (dX = dY·W)
 *   matmulTN(a, b)          c  = aᵀ·b         a [k, m], b [k, n]     (dW = dYᵀ·X)
 */
import { native } from '../native.js';
import { fail } from '../errors.js';
import { checkOut, outputFor, type Tensor } from '../tensor.js';
import { deviceOp } from '../device.js';

function dims2(t: Tensor, arg: string): [number, number] {
  if (t.rank !== 2) fail('E_SHAPE', arg, t, 'a 2-D tensor');
  if (t.dtype !== 'float32') fail('E_DTYPE', arg, t, 'a float32 tensor');
  return [t.shape[0], t.shape[1]];
}

// The native CPU GEMM (native/cpu/gemm.cc) when the addon has it; a plain JS loop otherwise.
function gemmJs(a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, transA: boolean, transB: boolean, bias?: Float32Array): void {
  if (typeof native.gemm === 'function' && m > 0 && n > 0 && k > 0) {
    native.gemm(a, 0, b, 0, c, 0, m, n, k, transA, transB, bias ?? null, 0, false);
    return;
  }
  c.fill(0);
  if (bias) for (let i = 0; i < m; i++) c.set(bias, i * n);
  for (let i = 0; i < m; i++) {
    const ci = i * n;
    for (let p = 0; p < k; p++) {
      const av = transA ? a[p * m + i] : a[i * k + p];
      if (av === 0) continue;
      if (transB) for (let j = 0; j < n; j++) c[ci + j] += av * b[j * k + p];
      else {
        const bp = p * n;
        for (let j = 0; j < n; j++) c[ci + j] += av * b[bp + j];
      }
    }
  }
}

/** y = x·Wᵀ + bias. x [rows, in], W [out, in], bias [out] or null. */
export function linearForward(x: Tensor, w: Tensor, bias: Tensor | null, out?: Tensor): Tensor {
  const [rows, inF] = dims2(x, 'x');
  const [outF, wIn] = dims2(w, 'weight');
  if (wIn !== inF) fail('E_SHAPE', 'weight', w, `a weight [out, ${inF}] (x is [${rows}, ${inF}])`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outF)) fail('E_SHAPE', 'bias', bias, `a bias of shape [${outF}]`);
  if (x.device !== 'cpu') return deviceOp(x.device, 'linear')(x, w, bias ?? undefined, { out });
  const y = outputFor(checkOut(out, [rows, outF], 'float32', 'cpu'), [rows, outF], 'float32');
  const ys = y.storage() as Float32Array;
  gemmJs(x.storage() as Float32Array, w.storage() as Float32Array, ys, rows, outF, inF, false, true, bias ? (bias.storage() as Float32Array) : undefined);
  return y;
}

/** c = a·b. a [m, k], b [k, n]. */
export function matmulNN(a: Tensor, b: Tensor, out?: Tensor): Tensor {
  const [m, k] = dims2(a, 'a');
  const [bk, n] = dims2(b, 'b');
  if (bk !== k) fail('E_SHAPE', 'b', b, `a matrix [${k}, n] (a is [${m}, ${k}])`);
  if (a.device !== 'cpu') return deviceOp(a.device, 'matmul')(a, b, { out });
  const c = outputFor(checkOut(out, [m, n], 'float32', 'cpu'), [m, n], 'float32');
  gemmJs(a.storage() as Float32Array, b.storage() as Float32Array, c.storage() as Float32Array, m, n, k, false, false);
  return c;
}

/** c = aᵀ·b. a [k, m], b [k, n]. */
export function matmulTN(a: Tensor, b: Tensor, out?: Tensor): Tensor {
  const [k, m] = dims2(a, 'a');
  const [bk, n] = dims2(b, 'b');
  if (bk !== k) fail('E_SHAPE', 'b', b, `a matrix [${k}, n] (a is [${k}, ${m}])`);
  if (a.device !== 'cpu') return deviceOp(a.device, 'matmul')(a, b, { transA: true, out });
  const c = outputFor(checkOut(out, [m, n], 'float32', 'cpu'), [m, n], 'float32');
  gemmJs(a.storage() as Float32Array, b.storage() as Float32Array, c.storage() as Float32Array, m, n, k, true, false);
  return c;
}
