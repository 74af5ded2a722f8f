// lib/bench/onnx.ts, the ONNX writer of `bench serve`: the bytes read back with a protobuf reader written here
// (field numbers from onnx/onnx.proto), and, where onnxruntime-node is installed, ONNX Runtime on the bench's MLP
// against a float64 reference and our dense forward.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { tensor, type Tensor } from '../lib/index.js';
import { mlpOnnx } from '../lib/bench/onnx.js';
import { loadOrt, ortSession, writeMlp, type MlpSpec } from '../lib/bench/serve.js';
import { InferenceModel } from '../lib/serve/model.js';
import { loadModel } from '../lib/io/model-file.js';
import { prng } from './helpers.js';

/** Fields of one protobuf message: number → values (varints as numbers, length-delimited as bytes). */
function fields(b: Uint8Array): Map<number, (number | Uint8Array)[]> {
  const out = new Map<number, (number | Uint8Array)[]>();
  let i = 0;
  const varint = () => {
    let v = 0, mul = 1;
    for (;;) { const c = b[i++]; v += (c & 0x7f) * mul; mul *= 128; if (c < 0x80) return v; }
  };
  while (i < b.length) {
    const k = varint(), f = Math.floor(k / 8), wire = k % 8;
    let v: number | Uint8Array;
    if (wire === 0) v = varint();
    else if (wire === 2) { const n = varint(); v = b.subarray(i, i + n); i += n; }
    else throw new Error(`wire type ${wire} at ${i}`);
    if (!out.has(f)) out.set(f, []);
    out.get(f)!.push(v);
  }
  return out;
}
const sub = (m: Map<number, (number | Uint8Array)[]>, f: number) => (m.get(f) ?? []).map((v) => fields(v as Uint8Array));
const text = (m: Map<number, (number | Uint8Array)[]>, f: number) => (m.get(f) ?? []).map((v) => new TextDecoder().decode(v as Uint8Array));

function randomT(shape: number[], seed: number): Tensor {
  const r = prng(seed);
  return tensor(Array.from({ length: shape.reduce((a, c) => a * c, 1) }, () => r() * 2 - 1), shape);
}

describe('mlpOnnx', () => {
  it('writes a ModelProto of Gemm (transB) and Relu nodes with the weights as raw float32 initializers', () => {
    // 300 columns: dims and lengths above 127 take two-byte varints
    const w0 = randomT([6, 300], 1), b0 = randomT([6], 2), w1 = randomT([3, 6], 3);
    const model = fields(mlpOnnx([{ weight: w0, bias: b0, relu: true }, { weight: w1, bias: null, relu: false }]));
    expect(model.get(1)).toEqual([8]); // ir_version
    const [opset] = sub(model, 8);
    expect(text(opset, 1)).toEqual(['']);
    expect(opset.get(2)).toEqual([17]);
    const [graph] = sub(model, 7);
    const nodes = sub(graph, 1);
    expect(nodes.map((n) => text(n, 4)[0])).toEqual(['Gemm', 'Relu', 'Gemm']);
    expect(nodes.map((n) => text(n, 1))).toEqual([['x', 'w0', 'b0'], ['gemm0'], ['relu0', 'w1']]);
    expect(nodes.map((n) => text(n, 2))).toEqual([['gemm0'], ['relu0'], ['y']]);
    for (const n of [nodes[0], nodes[2]]) {
      const [attr] = sub(n, 5);
      expect([text(attr, 1)[0], attr.get(3)?.[0], attr.get(20)?.[0]]).toEqual(['transB', 1, 2]); // INT attribute 1
    }
    const inits = sub(graph, 5);
    expect(inits.map((t) => text(t, 8)[0])).toEqual(['w0', 'b0', 'w1']);
    [w0, b0, w1].forEach((t, i) => {
      expect(inits[i].get(1)).toEqual(t.shape);
      expect(inits[i].get(2)).toEqual([1]); // FLOAT
      const raw = inits[i].get(9)![0] as Uint8Array;
      expect(Array.from(new Float32Array(raw.slice().buffer))).toEqual(Array.from(t.storage() as Float32Array));
    });
    const io = (f: number) => sub(graph, f).map((v) => {
      const [tt] = sub(sub(v, 2)[0], 1);
      const dims = sub(sub(tt, 2)[0], 1).map((d) => d.get(1)?.[0] ?? text(d, 2)[0]);
      return [text(v, 1)[0], tt.get(1)?.[0], dims];
    });
    expect(io(11)).toEqual([['x', 1, ['batch', 300]]]);
    expect(io(12)).toEqual([['y', 1, ['batch', 3]]]);
  });
});

const { ort } = await loadOrt();

describe.skipIf(!ort)('ONNX Runtime on the bench MLP (onnxruntime-node installed)', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(path.join(tmpdir(), 'nmsparse-onnx-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('equals a float64 reference and our dense forward to 1e-5', async () => {
    const spec: MlpSpec = { label: 'test', input: 64, layers: [{ name: 'fc1', out: 48, sparse: true }, { name: 'fc2', out: 32, sparse: true }, { name: 'out', out: 10, sparse: false }] };
    const file = path.join(dir, 'mlp.safetensors');
    const session = await ortSession(ort!, await writeMlp(file, spec));
    const x = randomT([5, 64], 9);
    const y = (await session.run({ x: new ort!.Tensor('float32', x.storage() as Float32Array, [5, 64]) })).y;
    await session.release();
    expect(y.dims).toEqual([5, 10]);
    const got = y.data as Float32Array;
    // float64 reference from the file's weights
    const mf = await loadModel(file);
    let h = Array.from(x.storage() as Float32Array), width = 64;
    spec.layers.forEach(({ name, out }, l) => {
      const w = mf.tensors.get(`${name}.weight`)!.storage() as Float32Array, b = mf.tensors.get(`${name}.bias`)!.storage() as Float32Array;
      const next = new Array<number>(5 * out);
      for (let r = 0; r < 5; r++)
        for (let o = 0; o < out; o++) {
          let a = b[o];
          for (let k = 0; k < width; k++) a += h[r * width + k] * w[o * width + k];
          next[r * out + o] = l < spec.layers.length - 1 ? Math.max(0, a) : a;
        }
      h = next; width = out;
    });
    const dense = await InferenceModel.load(file, { sparse: false });
    const ours = (await dense.forward(x)).storage() as Float32Array;
    await dense.dispose();
    for (let i = 0; i < 50; i++) {
      expect(Math.abs(got[i] - h[i]), `ORT [${i}]`).toBeLessThanOrEqual(1e-5);
      expect(Math.abs(got[i] - ours[i]), `ORT vs nmsparse [${i}]`).toBeLessThanOrEqual(1e-5);
    }
  });
});
