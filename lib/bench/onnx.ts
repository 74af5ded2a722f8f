/**
 * The smallest ONNX writer `nmsparse bench serve` needs to give ONNX Runtime the same MLP it serves: a ModelProto
 * (IR 8, opset 17) of Gemm (transB = 1, so the weights stay in PyTorch's [out, in] layout) and Relu nodes with
 * float32 initializers, input `x` [batch, in] and output `y` [batch, out]. Only the protobuf fields written here
 * are encoded (onnx/onnx.proto field numbers in the comments); no reader, no other op.
 */
import type { Tensor } from '../tensor.js';

/** One Linear layer: y = x·Wᵀ + b (W float32 [out, in], b float32 [out] or null), then ReLU when `relu`. */
export interface OnnxLinear { weight: Tensor; bias: Tensor | null; relu: boolean }

const ONNX_FLOAT = 1; // TensorProto.DataType.FLOAT
const ATTR_INT = 2; // AttributeProto.AttributeType.INT

/** A non-negative integer below 2^53 as a base-128 varint. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80); }
  out.push(n);
  return out;
}

type Bytes = Uint8Array;
const key = (field: number, wire: 0 | 2) => varint(field * 8 + wire);
const int = (field: number, v: number): Bytes => Uint8Array.from([...key(field, 0), ...varint(v)]);
const bytes = (field: number, b: Bytes): Bytes => concat([Uint8Array.from([...key(field, 2), ...varint(b.length)]), b]);
const msg = (field: number, parts: Bytes[]): Bytes => bytes(field, concat(parts));
const str = (field: number, s: string): Bytes => bytes(field, new TextEncoder().encode(s));

function concat(parts: Bytes[]): Bytes {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian float32, as this machine holds it). */
function initializer(name: string, t: Tensor): Bytes {
  if (t.dtype !== 'float32') throw new TypeError(`onnx: ${name} is ${t.dtype}, expected float32`);
  const v = t.storage() as Float32Array;
  return msg(5, [...t.shape.map((d) => int(1, d)), int(2, ONNX_FLOAT), str(8, name), bytes(9, new Uint8Array(v.buffer, v.byteOffset, v.byteLength))]);
}

/** ValueInfoProto (name 1, type 2) of a float tensor [batch, n]: TypeProto.tensor_type 1 → elem_type 1, shape 2 → dim 1. */
function valueInfo(field: number, name: string, n: number): Bytes {
  const dims = [msg(1, [str(2, 'batch')]), msg(1, [int(1, n)])]; // Dimension: dim_value 1, dim_param 2
  return msg(field, [str(1, name), msg(2, [msg(1, [int(1, ONNX_FLOAT), msg(2, dims)])])]);
}

/** NodeProto: input 1, output 2, name 3, op_type 4, attribute 5 (AttributeProto: name 1, i 3, type 20). */
function node(op: string, inputs: string[], output: string, attrs: Record<string, number> = {}): Bytes {
  const a = Object.entries(attrs).map(([k, v]) => msg(5, [str(1, k), int(3, v), int(20, ATTR_INT)]));
  return msg(1, [...inputs.map((i) => str(1, i)), str(2, output), str(3, `${op}_${output}`), str(4, op), ...a]);
}

/** The serialized ModelProto of the MLP `layers` (applied in order). */
export function mlpOnnx(layers: OnnxLinear[]): Uint8Array {
  if (layers.length === 0) throw new RangeError('onnx: an MLP needs at least one layer');
  const nodes: Bytes[] = [], inits: Bytes[] = [];
  let h = 'x';
  layers.forEach((l, i) => {
    const last = i === layers.length - 1;
    const g = last && !l.relu ? 'y' : `gemm${i}`;
    inits.push(initializer(`w${i}`, l.weight));
    if (l.bias) inits.push(initializer(`b${i}`, l.bias));
    nodes.push(node('Gemm', l.bias ? [h, `w${i}`, `b${i}`] : [h, `w${i}`], g, { transB: 1 }));
    h = g;
    if (l.relu) nodes.push(node('Relu', [g], (h = last ? 'y' : `relu${i}`)));
  });
  // GraphProto: node 1, name 2, initializer 5, input 11, output 12.
  const graph = msg(7, [...nodes, str(2, 'nmsparse_mlp'), ...inits, valueInfo(11, 'x', layers[0].weight.shape[1]), valueInfo(12, 'y', layers[layers.length - 1].weight.shape[0])]);
  // ModelProto: ir_version 1, producer_name 2, graph 7, opset_import 8 (OperatorSetIdProto: domain 1, version 2).
  return concat([int(1, 8), str(2, 'nmsparse bench'), graph, msg(8, [str(1, ''), int(2, 17)])]);
}
