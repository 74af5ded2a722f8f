// The addon contract (lib/native.ts): the loaded addon exports exactly the declared functions, the enum codes
// lib/ sends (dtype, activation) are the ones native/core defines, the options-object bindings read their fields
// by name (a missing or misspelt one is a typed error naming it); trimHostMemory gives freed heap back.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import v8 from 'node:v8';
import vm from 'node:vm';
import { native, addonNames, addonPath } from '../lib/native.js';
import { DTYPES } from '../lib/dtype.js';
import { ACTIVATIONS } from '../lib/gemm.js';

describe('addon contract', () => {
  it('exports exactly the functions lib/native.ts declares (the CUDA ones in a CUDA build)', () => {
    const expected = [...addonNames.cpu, ...(native.buildInfo().cuda ? addonNames.cuda : [])].sort();
    expect(Object.keys(native).sort()).toEqual(expected);
  });

  // The CUDA classes' constructors take the External their Wrap made, type-tagged (napi/cuda_device.cc): any other
  // External reached them as a device pointer, so `new CudaBuffer(plan.handle)` moved the plan's memory out (its
  // "bytes" read 1139283656) and freed it as device memory on collection. No GPU is needed to reach them.
  const cudaClasses = native.buildInfo().cuda ? ['CudaBuffer', 'CudaSparse'] : [];
  it.skipIf(cudaClasses.length === 0)('CudaBuffer and CudaSparse are made only by the backend: another External is E_TYPE, read not at all', () => {
    const layer = { w: Float32Array.from({ length: 24 }, (_, i) => i % 5), bias: null, n: 4, k: 6, relu: false };
    const plan = native.mlpPlan({ layers: [layer] });
    const x = Float32Array.from({ length: 6 }, (_, i) => i + 1), before = new Float32Array(4), after = new Float32Array(4).fill(NaN);
    native.mlpForward(plan, 0, 1, x, 1, before, false);
    const classes = native as unknown as Record<string, new (...a: unknown[]) => unknown>;
    for (const name of cudaClasses)
      for (const arg of [plan.handle, undefined, {}, 1])
        expect(() => new classes[name](arg), `${name}(${typeof arg})`).toThrow(expect.objectContaining({ code: 'E_TYPE', message: expect.stringContaining('not by new') }));
    native.mlpForward(plan, 0, 1, x, 1, after, false);  // the plan is whole
    expect(Array.from(after)).toEqual(Array.from(before));
  });

  // core/threadpool.cc: the CPUs the process may run on (a container's cpuset), not the machine's count.
  const taskset = process.platform === 'linux' && spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  it.skipIf(!taskset)('the thread pool defaults to the CPUs the process may run on: one under taskset -c 0', () => {
    const r = spawnSync('taskset', ['-c', '0', process.execPath, '-e', `console.log(require(${JSON.stringify(addonPath)}).numThreads())`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('1');
  });

  it('reads an options object by name: a missing or misspelt field is a typed error naming it', () => {
    const err = (code: string, message: string) => expect.objectContaining({ code, message: expect.stringContaining(message) });
    // im2col of a 1×3×3×1 image with a 2×2 window, stride 1: 4 patches of 4; the call itself works as given.
    const window = { batch: 1, h: 3, w: 3, c: 1, kh: 2, kw: 2, strideH: 1, strideW: 1, padH: 0, padW: 0 };
    const x = Float32Array.from({ length: 9 }, (_, i) => i), cols = new Float32Array(16).fill(NaN);
    native.im2col({ x, cols, ...window });
    expect(Array.from(cols)).toEqual([0, 1, 3, 4, 1, 2, 4, 5, 3, 4, 6, 7, 4, 5, 7, 8]);
    const { strideH, ...noStrideH } = window;
    expect(() => native.im2col({ x, cols, ...noStrideH, strideh: strideH } as never))
      .toThrowError(err('E_TYPE', 'im2col: options.strideH: expected a number, got undefined'));
    expect(() => native.im2col({ x, cols, ...window, padh: 1 } as never)).toThrowError(err('E_VALUE', 'im2col: options.padh: unknown option'));
    // Buffers swapped: cols (16 floats) passes for x (9), x is too short for cols.
    expect(() => native.im2col({ x: cols, cols: x, ...window })).toThrowError(err('E_SHAPE', 'im2col: options.cols: buffer has 36 bytes'));
    // layerNormForward: an optional field misspelt is not silently dropped.
    const ln = { x: new Float32Array(4), y: new Float32Array(4), mean: new Float32Array(2), rstd: new Float32Array(2), rows: 2, cols: 2, eps: 1e-5 };
    native.layerNormForward({ ...ln, gamma: null });
    expect(() => native.layerNormForward({ ...ln, gama: new Float32Array(2) } as never))
      .toThrowError(err('E_VALUE', 'layerNormForward: options.gama: unknown option'));
    expect(() => native.layerNormForward({ ...ln, eps: '1e-5' } as never)).toThrowError(err('E_TYPE', 'layerNormForward: options.eps: expected a number'));
    // nmCompress and blasSgemm: the other families.
    const nm = { w: new Float32Array(4), dtype: DTYPES.indexOf('float32'), rows: 1, cols: 4, n: 2, m: 4, values: new Float32Array(2), positions: new Uint8Array(1) };
    native.nmCompress(nm);
    const { positions, ...noPositions } = nm;
    expect(() => native.nmCompress({ ...noPositions, position: positions } as never))
      .toThrowError(err('E_TYPE', 'nmCompress: options.positions: expected a TypedArray or ArrayBuffer'));
    expect(() => native.nmCompress(nm.w as never)).toThrowError(err('E_TYPE', 'nmCompress(options): expected an options object'));
    const mm = { a: new Float32Array(4), b: new Float32Array(4), c: new Float32Array(4), m: 2, n: 2, k: 2, transA: false, transB: false };
    expect(() => native.blasSgemm({ ...mm, transA: 0 } as never)).toThrowError(err('E_TYPE', 'blasSgemm: options.transA: expected a boolean'));
    expect(() => native.blasSgemm({ ...mm, tranB: true } as never)).toThrowError(err('E_VALUE', 'blasSgemm: options.tranB: unknown option'));
    // sgdStep (no momentum: p -= lr·g; with the SR-STE term g += λ·(1 − mask)·p first) and nmTrainPass.
    const p = Float32Array.of(1, 2), g = Float32Array.of(0.5, -1);
    const sgd = { p, g, buf: null, n: 2, lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, first: false };
    native.sgdStep({ ...sgd, mask: Uint8Array.of(1, 0), lambda: 0.5 });
    expect(Array.from(p)).toEqual([1 - 0.1 * 0.5, 2 - 0.1 * (-1 + 0.5 * 2)].map(Math.fround));
    const { weightDecay, ...noDecay } = sgd;
    expect(() => native.sgdStep({ ...noDecay, weightdecay: weightDecay } as never))
      .toThrowError(err('E_TYPE', 'sgdStep: options.weightDecay: expected a number, got undefined'));
    expect(() => native.sgdStep({ ...sgd, mask: Uint8Array.of(1, 0), lamda: 0.5 } as never))
      .toThrowError(err('E_TYPE', 'sgdStep: options.lambda: expected a number, got undefined'));
    expect(() => native.sgdStep({ ...sgd, lambda: 0.5 })).toThrowError(err('E_VALUE', 'sgdStep: options.lambda: unknown option'));
    expect(Array.from(p)).toEqual([1 - 0.1 * 0.5, 2 - 0.1 * (-1 + 0.5 * 2)].map(Math.fround));
    const pass = { w: Float32Array.of(1, -3, 0.5, 2), rows: 1, cols: 4, n: 2, m: 4, mask: new Uint8Array(4).fill(7), select: true,
      countSad: false, eff: new Float32Array(4).fill(NaN), values: new Float32Array(2).fill(NaN), positions: new Uint8Array(1) };
    expect(native.nmTrainPass(pass)).toBe(0);
    expect([Array.from(pass.mask), Array.from(pass.eff), Array.from(pass.values)]).toEqual([[0, 1, 0, 1], [0, -3, 0, 2], [-3, 2]]);
    const { countSad, ...noCount } = pass;
    expect(() => native.nmTrainPass({ ...noCount, countsad: countSad } as never))
      .toThrowError(err('E_TYPE', 'nmTrainPass: options.countSad: expected a boolean'));
    expect(() => native.nmTrainPass({ ...pass, dense: true } as never)).toThrowError(err('E_VALUE', 'nmTrainPass: options.dense: unknown option'));
  });

  it('shares the dtype and activation codes with native/core', () => {
    const t = native.enumTables();
    expect(t.dtype).toEqual(DTYPES);
    expect(t.activation).toEqual(ACTIVATIONS);
  });

  const glibc = Boolean((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime);
  it.runIf(glibc)('trimHostMemory gives back the free pages inside a fragmented heap (glibc)', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const rss = () => Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096;
    let freed = 0;
    const collected = new FinalizationRegistry(() => freed++);
    // 640 native blocks of 96 KiB (under glibc's mmap threshold: from the heap), resident, one in 8 kept: the
    // others become holes between live blocks, which free() cannot trim from the heap's top. Made in a plain
    // function, so that nothing in this async frame still points at the ones dropped.
    const fragment = (): ArrayBuffer[] => {
      const all = Array.from({ length: 640 }, () => native.allocBuffer(96 << 10));
      all.forEach((b, i) => { new Uint8Array(b).fill(1); if (i % 8) collected.register(b, i); });
      return all.filter((_, i) => i % 8 === 0);
    };
    const kept = fragment();
    gc();
    for (let i = 0; i < 50 && freed < 560; i++) await new Promise((r) => setImmediate(r));
    expect(freed).toBe(560);
    // V8 may let go of the backing stores a while later (its sweeper runs on a background thread): trim until the
    // holes are given back, for at most 5 s (free() alone leaves them mapped).
    const before = rss(), want = (560 * (96 << 10)) / 2;
    let released = false;
    for (const t0 = Date.now(); Date.now() - t0 < 5000; await new Promise((r) => setTimeout(r, 20))) {
      released = native.trimHostMemory() || released;
      if (before - rss() > want) break;
    }
    expect(released).toBe(true);
    expect(before - rss(), `RSS ${before} → ${rss()}`).toBeGreaterThan(want);
    expect(kept.length).toBe(80);
  });
});
