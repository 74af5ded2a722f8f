// safetensors read/write: round trips bit for bit, the PyTorch-made fixtures (test/fixtures/make_torch_fixture.py),
// and every kind of malformed file → a typed NmSparseError naming the file and the tensor.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NmSparseError, Tensor, DTYPES, nm, type DType } from '../lib/index.js';
import {
  loadSafetensors, loadSafetensorsSync, parseSafetensors, readSafetensorsHeader, saveSafetensors, saveSafetensorsSync,
  serializeSafetensors, MAX_HEADER_BYTES,
} from '../lib/io/safetensors.js';
import { inferMlpArch, loadModel, paramName, saveModel } from '../lib/io/model-file.js';
import { archOf, saveModule } from '../lib/io/module-file.js';
import { loadCheckpoint, saveCheckpoint } from '../lib/train/checkpoint.js';
import { sparseWeights } from '../lib/train/trainer.js';
import { cnn, mlp } from '../lib/nn/models.js';
import { createRecipe } from '../lib/recipes/index.js';
import { randomTensor } from './helpers.js';

const { prune, compress } = nm;

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const expected = JSON.parse(readFileSync(path.join(FIXTURES, 'torch_expected.json'), 'utf8'));

let dir: string;
beforeAll(() => { dir = mkdtempSync(path.join(tmpdir(), 'nmsparse-io-')); });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const bytesOf = (t: Tensor) => { const s = t.storage(); return Buffer.from(s.buffer, s.byteOffset, s.byteLength); };

/** Bit patterns of a tensor, like the fixture's `bits`. */
function bits(t: Tensor): number[] {
  const s = t.storage();
  if (t.dtype === 'float32') return Array.from(new Uint32Array(s.buffer, s.byteOffset, s.length));
  return Array.from(s as ArrayLike<number>);
}

/** Expects fn to throw NmSparseError with `code` and a message containing every `parts`. */
async function rejects(fn: () => unknown, code: string, ...parts: string[]): Promise<void> {
  let err: unknown;
  try { await fn(); } catch (e) { err = e; }
  expect(err, 'expected an error').toBeInstanceOf(NmSparseError);
  const e = err as NmSparseError;
  expect(e.code, e.message).toBe(code);
  for (const p of parts) expect(e.message).toContain(p);
}

describe('safetensors round trip', () => {
  it('every dtype, bit for bit, async and sync, with metadata', async () => {
    const tensors = new Map<string, Tensor>();
    DTYPES.forEach((d, i) => {
      tensors.set(`layers.${i}.weight`, randomTensor([3, 8], d, 100 + i));
      tensors.set(`t.${d}.odd`, randomTensor([5], d, 200 + i)); // odd byte counts between aligned ones
    });
    // NaN payloads, -0, infinities and subnormals must survive untouched
    const f = new Float32Array([NaN, -0, Infinity, -Infinity, 1e-45, 3.4e38]);
    new Uint32Array(f.buffer)[0] = 0x7fc12345;
    tensors.set('special', new Tensor([2, 3], 'float32', f));
    tensors.set('half.nan', new Tensor([3], 'float16', new Uint16Array([0x7e01, 0x8000, 0x0001])));
    tensors.set('scalar', new Tensor([], 'float32', new Float32Array([1.5])));
    tensors.set('empty', new Tensor([0, 4], 'int8', new Int8Array(0)));
    const metadata = { format: 'pt', 'nmsparse.note': 'ünïcode ✓ "q"\n' };
    const a = path.join(dir, 'rt.safetensors'), b = path.join(dir, 'rt-sync.safetensors');
    await saveSafetensors(a, tensors, { metadata });
    saveSafetensorsSync(b, tensors, { metadata });
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    expect(readFileSync(a).equals(serializeSafetensors(tensors, { metadata }))).toBe(true);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]); // no temporary left behind
    for (const got of [await loadSafetensors(a), loadSafetensorsSync(a), parseSafetensors(readFileSync(a))]) {
      expect(got.metadata).toEqual(metadata);
      expect([...got.tensors.keys()].sort()).toEqual([...tensors.keys()].sort());
      for (const [name, t] of tensors) {
        const u = got.tensors.get(name)!;
        expect(u.dtype).toBe(t.dtype);
        expect(u.shape).toEqual(t.shape);
        expect(bytesOf(u).equals(bytesOf(t)), name).toBe(true);
      }
    }
  });

  it('layout: 8-byte aligned header padded with spaces, dtype-then-name order, data tiled', async () => {
    const buf = serializeSafetensors({ b: randomTensor([3], 'uint8', 1), a: randomTensor([3], 'uint8', 2), z: randomTensor([2], 'float32', 3), h: randomTensor([1], 'bfloat16', 4) });
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = buf.subarray(8, 8 + n).toString('utf8');
    expect(text).toMatch(/^\{.*\} *$/);
    expect(Object.keys(JSON.parse(text))).toEqual(['z', 'h', 'a', 'b']);
    expect(JSON.parse(text).z).toEqual({ dtype: 'F32', shape: [2], data_offsets: [0, 8] });
    expect(buf.length).toBe(8 + n + 8 + 2 + 3 + 3);
  });

  it('reads a subset by name and the header alone', async () => {
    const file = path.join(dir, 'subset.safetensors');
    await saveSafetensors(file, { x: randomTensor([4, 4], 'float32', 1), y: randomTensor([2], 'int8', 2) });
    const h = await readSafetensorsHeader(file);
    expect([...h.tensors.keys()]).toEqual(['x', 'y']);
    expect(h.tensors.get('y')).toMatchObject({ dtype: 'int8', format: 'I8', shape: [2], begin: 64, end: 66 });
    const got = await loadSafetensors(file, { names: ['y'] });
    expect([...got.tensors.keys()]).toEqual(['y']);
    await rejects(() => loadSafetensors(file, { names: ['nope'] }), 'E_IO', file, '"nope"');
  });

  it('bad arguments to the writer', async () => {
    await rejects(() => saveSafetensors(path.join(dir, 'x'), { __metadata__: randomTensor([1], 'uint8', 1) }), 'E_VALUE', '__metadata__');
    await rejects(() => saveSafetensors(path.join(dir, 'x'), { a: [1, 2] as unknown as Tensor }), 'E_TYPE', '"a"');
    await rejects(() => saveSafetensors(path.join(dir, 'x'), { a: randomTensor([1], 'uint8', 1) }, { metadata: { k: 3 as unknown as string } }), 'E_TYPE', 'metadata');
    const t = randomTensor([1], 'uint8', 1); t.dispose();
    await rejects(() => saveSafetensors(path.join(dir, 'x'), { a: t }), 'E_DISPOSED');
    await rejects(() => saveSafetensors(path.join(dir, 'no-such-dir', 'x.safetensors'), { a: randomTensor([1], 'uint8', 1) }), 'E_IO', 'no-such-dir');
  });
});

describe('safetensors made by PyTorch (test/fixtures/make_torch_fixture.py)', () => {
  it('reads every dtype bit for bit as torch wrote it', async () => {
    const file = path.join(FIXTURES, 'torch_dtypes.safetensors');
    const got = await loadSafetensors(file);
    expect(got.metadata).toEqual(expected.dtypes.metadata);
    const want = expected.dtypes.tensors as Record<string, { dtype: string; shape: number[]; bits: number[] }>;
    expect([...got.tensors.keys()].sort()).toEqual(Object.keys(want).sort());
    const fromSt: Record<string, DType> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', I8: 'int8', U8: 'uint8' };
    for (const [name, w] of Object.entries(want)) {
      const t = got.tensors.get(name)!;
      expect(t.dtype, name).toBe(fromSt[w.dtype]);
      expect(t.shape, name).toEqual(w.shape);
      expect(bits(t), name).toEqual(w.bits);
    }
  });

  it('our writer reproduces torch-made files byte for byte (same layout as the reference serializer)', async () => {
    for (const name of ['torch_dtypes.safetensors', 'torch_mlp.safetensors']) {
      const file = path.join(FIXTURES, name);
      const got = await loadSafetensors(file);
      const out = path.join(dir, name);
      await saveSafetensors(out, got.tensors, { metadata: got.metadata });
      expect(readFileSync(out).equals(readFileSync(file)), name).toBe(true);
    }
  });
});

describe('malformed files → typed errors naming the file and the tensor', () => {
  const good = () => serializeSafetensors({ 'layers.0.weight': randomTensor([2, 4], 'float32', 1), 'layers.0.bias': randomTensor([2], 'float32', 2) }, { metadata: { format: 'pt' } });
  /** A file from a header object (padded) and `data` bytes; `len` overrides the length prefix. */
  const craft = (header: unknown, data = Buffer.alloc(0), len?: bigint) => {
    let h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
    h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
    const p = Buffer.alloc(8);
    p.writeBigUInt64LE(len ?? BigInt(h.length));
    return Buffer.concat([p, h, data]);
  };
  const entry = (dtype: unknown, shape: unknown, data_offsets: unknown) => ({ dtype, shape, data_offsets });
  const cases: [string, () => Buffer, string, string[]][] = [
    ['empty file', () => Buffer.alloc(0), 'E_IO', ['too short']],
    ['7 bytes', () => Buffer.alloc(7), 'E_IO', ['too short']],
    ['truncated inside the header', () => good().subarray(0, 40), 'E_IO', ['runs past the end']],
    ['truncated inside the data', () => good().subarray(0, good().length - 3), 'E_IO', ['"layers.0.weight"', 'run past the end']],
    ['trailing bytes', () => Buffer.concat([good(), Buffer.alloc(4)]), 'E_IO', ['trailing']],
    ['oversized header length', () => craft({}, undefined, BigInt(MAX_HEADER_BYTES + 1)), 'E_IO', ['limit']],
    ['header length 2^64-1', () => craft({}, undefined, 2n ** 64n - 1n), 'E_IO', ['limit']],
    ['header length 0', () => craft({}, undefined, 0n), 'E_IO', ['too short']],
    ['not JSON', () => craft('{"a": [1, 2'), 'E_IO', ['not valid JSON']],
    ['not an object', () => craft('[1, 2, 3]'), 'E_IO', ["start with '{'"]],
    ['not UTF-8', () => craft(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('latin1')), 'E_IO', []],
    ['JSON null entry', () => craft({ w: null }), 'E_IO', ['"w"', 'entry']],
    ['metadata not strings', () => craft({ __metadata__: { a: 1 } }), 'E_IO', ['__metadata__']],
    ['metadata an array', () => craft({ __metadata__: ['a'] }), 'E_IO', ['__metadata__']],
    ['unknown dtype', () => craft({ w: entry('F128', [1], [0, 16]) }, Buffer.alloc(16)), 'E_DTYPE', ['"w"', 'F128']],
    ['dtype not a string', () => craft({ w: entry(4, [1], [0, 4]) }, Buffer.alloc(4)), 'E_DTYPE', ['"w"']],
    ['negative dimension', () => craft({ w: entry('F32', [-1, 2], [0, 8]) }, Buffer.alloc(8)), 'E_SHAPE', ['"w"']],
    ['fractional dimension', () => craft({ w: entry('F32', [1.5], [0, 4]) }, Buffer.alloc(4)), 'E_SHAPE', ['"w"']],
    ['shape not an array', () => craft({ w: entry('F32', 4, [0, 16]) }, Buffer.alloc(16)), 'E_SHAPE', ['"w"']],
    ['shape × dtype ≠ bytes', () => craft({ w: entry('F32', [2, 3], [0, 16]) }, Buffer.alloc(16)), 'E_SHAPE', ['"w"', 'needs 24 bytes']],
    ['dtype size mismatch', () => craft({ w: entry('F16', [4], [0, 16]) }, Buffer.alloc(16)), 'E_SHAPE', ['"w"']],
    ['huge shape', () => craft({ w: entry('F32', [2 ** 40, 2 ** 40], [0, 16]) }, Buffer.alloc(16)), 'E_SHAPE', ['"w"']],
    ['offsets not a pair', () => craft({ w: entry('U8', [4], [0]) }, Buffer.alloc(4)), 'E_IO', ['"w"', 'data_offsets']],
    ['negative offset', () => craft({ w: entry('U8', [4], [-4, 0]) }, Buffer.alloc(4)), 'E_IO', ['"w"']],
    ['end before begin', () => craft({ w: entry('U8', [0], [4, 0]) }, Buffer.alloc(4)), 'E_IO', ['"w"', 'ends before']],
    ['overlapping offsets', () => craft({ a: entry('U8', [4], [0, 4]), b: entry('U8', [4], [2, 6]) }, Buffer.alloc(6)), 'E_IO', ['"b"', 'overlap', '"a"']],
    ['gap between tensors', () => craft({ a: entry('U8', [4], [0, 4]), b: entry('U8', [2], [6, 8]) }, Buffer.alloc(8)), 'E_IO', ['"b"', 'gap']],
    ['offsets out of range', () => craft({ a: entry('U8', [4], [0, 4]), b: entry('U8', [8], [4, 12]) }, Buffer.alloc(8)), 'E_IO', ['"b"', 'past the end']],
    ['same range twice', () => craft({ a: entry('U8', [4], [0, 4]), b: entry('U8', [4], [0, 4]) }, Buffer.alloc(4)), 'E_IO', ['overlap']],
  ];
  for (const [what, make, code, parts] of cases) {
    it(what, async () => {
      const file = path.join(dir, `bad-${what.replace(/\W+/g, '_')}.safetensors`);
      writeFileSync(file, make());
      await rejects(() => loadSafetensors(file), code, file, ...parts);
      await rejects(() => loadSafetensorsSync(file), code, file, ...parts);
      await rejects(() => readSafetensorsHeader(file), code, file, ...parts);
      await rejects(() => parseSafetensors(readFileSync(file), file), code, file, ...parts);
    });
  }

  it('a format dtype nmsparse has no tensor for: the rest of the file reads, that tensor is E_DTYPE', async () => {
    const file = path.join(dir, 'f64.safetensors');
    writeFileSync(file, craft({ d: entry('F64', [2], [0, 16]), u: entry('U8', [2], [16, 18]) }, Buffer.alloc(18)));
    expect((await loadSafetensors(file, { names: ['u'] })).tensors.get('u')!.shape).toEqual([2]);
    await rejects(() => loadSafetensors(file), 'E_DTYPE', file, '"d"', 'F64');
  });

  it('a missing file, a directory, a bad path argument', async () => {
    await rejects(() => loadSafetensors(path.join(dir, 'missing.safetensors')), 'E_IO', 'missing.safetensors', 'cannot open');
    await rejects(() => loadSafetensors(dir), 'E_IO', dir);
    await rejects(() => loadSafetensors(42 as unknown as string), 'E_TYPE');
  });

  it('random corruption of a good file never crashes: it loads or throws NmSparseError', async () => {
    const base = good();
    let state = 12345;
    const rnd = (n: number) => { state = (Math.imul(state, 1103515245) + 12345) >>> 0; return state % n; };
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(base);
      const k = 1 + rnd(4);
      for (let j = 0; j < k; j++) b[rnd(Math.min(b.length, 8 + Number(base.readBigUInt64LE(0))))] = rnd(256);
      const cut = rnd(5) === 0 ? b.subarray(0, rnd(b.length)) : b;
      try { parseSafetensors(cut, 'fuzz'); } catch (e) { expect(e, String(e)).toBeInstanceOf(NmSparseError); }
    }
  });
});

describe('model checkpoints: PyTorch names, N:M metadata, the compressed nm form', () => {
  const torchMlp = path.join(FIXTURES, 'torch_mlp.safetensors');
  const ours = path.join(FIXTURES, 'nmsparse_mlp_nm.safetensors');
  const SPARSE = { 'layers.0.weight': { pattern: '2:4', recipe: 'magnitude' }, 'layers.2.weight': '2:4' };
  const python = '/usr/bin/python3';
  const hasTorch = existsSync(python) && spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

  it('dense and nm forms round trip bit for bit; the nm form is smaller; metadata records pattern, recipe, arch', async () => {
    const src = await loadSafetensors(torchMlp);
    const arch = inferMlpArch(src.tensors);
    expect(arch.layers.map((l) => l.type)).toEqual(['Linear', 'ReLU', 'Linear', 'ReLU', 'Linear']);
    const dense = path.join(dir, 'mlp-dense.safetensors'), nmf = path.join(dir, 'mlp-nm.safetensors');
    await saveModel(dense, src.tensors, { arch, sparsity: SPARSE });
    await saveModel(nmf, src.tensors, { arch, sparsity: SPARSE, compressed: true });
    for (const f of [dense, nmf]) {
      const m = await loadModel(f);
      expect(m.arch).toEqual(arch);
      expect(m.sparsity['layers.0.weight']).toMatchObject({ pattern: '2:4', recipe: 'magnitude', shape: [64, 32] });
      expect(m.sparsity['layers.2.weight']).toMatchObject({ pattern: '2:4', shape: [48, 64] });
      expect(m.metadata.format).toBe('pt');
      expect([...m.tensors.keys()].sort()).toEqual([...src.tensors.keys()].sort());
      // torch prunes by multiplying with the mask, which leaves -0 where a negative weight was pruned; the nm
      // form stores only kept values, so those zeros come back +0 (equal as numbers, not as bits)
      const plusZero = (t: Tensor) => Float32Array.from(t.storage() as Float32Array, (x) => x + 0);
      for (const [k, t] of src.tensors) {
        if (f === nmf && k in SPARSE) expect(plusZero(m.tensors.get(k)!), k).toEqual(plusZero(t));
        else expect(bytesOf(m.tensors.get(k)!).equals(bytesOf(t)), k).toBe(true);
      }
      expect([...m.compressed.keys()]).toEqual(f === nmf ? ['layers.0.weight', 'layers.2.weight'] : []);
    }
    const h = await readSafetensorsHeader(nmf);
    expect(h.tensors.get('layers.0.weight.nm_values')).toMatchObject({ format: 'F32', shape: [64, 16] });
    expect(h.tensors.get('layers.0.weight.nm_positions')).toMatchObject({ format: 'U8', shape: [64, 4] });
    expect(h.tensors.has('layers.0.weight')).toBe(false);
    // a 2:4 float32 weight takes 0.53x its dense bytes: values 1/2, positions 2 bits per kept value = 1/32
    const w = (n: string) => { const e = h.tensors.get(n)!; return e.end - e.begin; };
    expect((w('layers.2.weight.nm_values') + w('layers.2.weight.nm_positions')) / (48 * 64 * 4)).toBeCloseTo(0.53125, 5);
  });

  it('the committed file written by our writer is reproduced exactly (PyTorch checked it: see make_torch_fixture.py --check)', async () => {
    const src = await loadSafetensors(torchMlp);
    const out = path.join(dir, 'nmsparse_mlp_nm.safetensors');
    await saveModel(out, src.tensors, { arch: inferMlpArch(src.tensors), sparsity: SPARSE, compressed: true, metadata: { 'nmsparse.note': 'written by saveModel() from torch_mlp.safetensors' } });
    if (process.env.NMSPARSE_UPDATE_FIXTURES === '1') writeFileSync(ours, readFileSync(out));
    expect(readFileSync(out).equals(readFileSync(ours))).toBe(true);
  });

  it.skipIf(!hasTorch)('PyTorch reads our files (runs make_torch_fixture.py --check with /usr/bin/python3)', async () => {
    const src = await loadSafetensors(torchMlp);
    const dense = path.join(dir, 'check-dense.safetensors');
    await saveModel(dense, src.tensors, { arch: inferMlpArch(src.tensors), sparsity: SPARSE });
    const r = spawnSync(python, [path.join(FIXTURES, 'make_torch_fixture.py'), '--check', ours, dense], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('OK');
  });

  it('conv weights: N:M along ci, nm form holds the [co, kh, kw, ci] permutation', async () => {
    const co = 4, ci = 8, kh = 3, kw = 3;
    // a [co, kh, kw, ci] tensor pruned 2:4 along ci, then permuted to PyTorch's [co, ci, kh, kw]
    const g = prune(randomTensor([co, kh, kw, ci], 'float32', 9), '2:4');
    const pt = g.reshape([co, kh * kw, ci]).transpose().reshape([co, ci, kh, kw]);
    const f = path.join(dir, 'conv.safetensors');
    await saveModel(f, { 'conv.weight': pt }, { sparsity: { 'conv.weight': '2:4' }, compressed: true });
    const m = await loadModel(f);
    expect(bytesOf(m.tensors.get('conv.weight')!).equals(bytesOf(pt))).toBe(true);
    expect(m.sparsity['conv.weight']).toMatchObject({ form: 'nm', layout: 'co,kh,kw,ci', shape: [co, ci, kh, kw] });
    expect(bytesOf(m.compressed.get('conv.weight')!.decompress()).equals(bytesOf(g))).toBe(true);
    // the same weight not pruned along ci is refused
    await rejects(() => saveModel(f, { 'conv.weight': randomTensor([co, ci, kh, kw], 'float32', 3) }, { sparsity: { 'conv.weight': '2:4' } }), 'E_NOT_NM', 'conv.weight');
  });

  it('every dtype in the nm form', async () => {
    for (const d of DTYPES) {
      const w = prune(randomTensor([6, 16], d, 31), '2:8');
      const f = path.join(dir, `nm-${d}.safetensors`);
      await saveModel(f, { w }, { sparsity: { w: '2:8' }, compressed: true });
      const m = await loadModel(f);
      expect(bytesOf(m.tensors.get('w')!).equals(bytesOf(w)), d).toBe(true);
      expect(m.compressed.get('w')!.dtype).toBe(d);
    }
  });

  it('bad checkpoints and bad save arguments → typed errors', async () => {
    const w = prune(randomTensor([4, 8], 'float32', 5), '2:4');
    await rejects(() => saveModel(path.join(dir, 'x'), { w: randomTensor([4, 8], 'float32', 5) }, { sparsity: { w: '2:4' } }), 'E_NOT_NM', '"w"', 'prune');
    await rejects(() => saveModel(path.join(dir, 'x'), { w }, { sparsity: { v: '2:4' } }), 'E_VALUE', '"v"');
    await rejects(() => saveModel(path.join(dir, 'x'), { w }, { sparsity: { w: '3:3' } }), 'E_PATTERN');
    await rejects(() => saveModel(path.join(dir, 'x'), { w }, { arch: { type: 'Sequential', layers: [{ type: 'Conv9' }] } as never }), 'E_VALUE', 'Conv9');
    const f = path.join(dir, 'bad-model.safetensors');
    const write = (tensors: Record<string, Tensor>, metadata: Record<string, string>) => writeFileSync(f, serializeSafetensors(tensors, { metadata }));
    const nmParts = () => { const s = compress(w, '2:4'); return { v: s.values, p: new Tensor([4, 1], 'uint8', s.positions.slice()) }; };
    write({ w }, { 'nmsparse.sparsity': '{not json' });
    await rejects(() => loadModel(f), 'E_IO', f, 'nmsparse.sparsity');
    write({ w }, { 'nmsparse.arch': '{"type":"Sequential","layers":[{"type":"Linear","in":-1,"out":2}]}' });
    await rejects(() => loadModel(f), 'E_IO', f, 'nmsparse.arch');
    write({ w }, { 'nmsparse.sparsity': '{"w":{"pattern":"2:4","form":"dense","shape":[4,8]}}' });
    expect((await loadModel(f)).sparsity.w.form).toBe('dense');
    write({ w: randomTensor([4, 8], 'float32', 5) }, { 'nmsparse.sparsity': '{"w":{"pattern":"2:4","form":"dense","shape":[4,8]}}' });
    await rejects(() => loadModel(f), 'E_NOT_NM', f, '"w"');
    write({ w }, { 'nmsparse.sparsity': '{"w":{"pattern":"2:4","form":"dense","shape":[8,4]}}' });
    await rejects(() => loadModel(f), 'E_SHAPE', f, '"w"');
    write({ w }, { 'nmsparse.sparsity': '{"w":{"pattern":"5:4","form":"dense","shape":[4,8]}}' });
    await rejects(() => loadModel(f), 'E_IO', f, 'pattern');
    write({ w }, { 'nmsparse.sparsity': '{"w":{"pattern":"2:4","form":"sparse","shape":[4,8]}}' });
    await rejects(() => loadModel(f), 'E_IO', f, 'form');
    let { v, p } = nmParts();
    write({ 'w.nm_values': v }, { 'nmsparse.sparsity': '{"w":{"pattern":"2:4","form":"nm","shape":[4,8]}}' });
    await rejects(() => loadModel(f), 'E_IO', f, 'w.nm_positions');
    write({ 'w.nm_values': v, 'w.nm_positions': p }, { 'nmsparse.sparsity': '{"w":{"pattern":"2:4","form":"nm","shape":[4,12]}}' });
    await rejects(() => loadModel(f), 'E_SHAPE', f, 'w.nm_values');
    write({ 'w.nm_values': v, 'w.nm_positions': new Tensor([4, 1], 'int8', new Int8Array(4)) }, { 'nmsparse.sparsity': '{"w":{"pattern":"2:4","form":"nm","shape":[4,8]}}' });
    await rejects(() => loadModel(f), 'E_DTYPE', f, 'w.nm_positions');
    ({ v, p } = nmParts());
    p.storage()[2] = 0b00000101; // row 2: positions 1, 1 in its first group
    write({ 'w.nm_values': v, 'w.nm_positions': p }, { 'nmsparse.sparsity': '{"w":{"pattern":"2:4","form":"nm","shape":[4,8]}}' });
    await rejects(() => loadModel(f), 'E_IO', f, 'row 2', 'ascending');
    for (const bad of ['{"mean":0,"std":0}', '{"mean":"0.1","std":1}', '[0.1,0.3]', '{nope'])  {
      write({ w }, { 'nmsparse.input': bad });
      await rejects(() => loadModel(f), 'E_IO', f, 'nmsparse.input');
    }
    for (const bad of [{ mean: 0, std: -1 }, { mean: NaN, std: 1 }, null, 0.5])
      await rejects(() => saveModel(path.join(dir, 'x'), { w }, { input: bad as never }), 'E_VALUE', 'options.input');
    await rejects(() => loadModel(ours, { decompress: 'no' as never }), 'E_TYPE', 'decompress');
  });

  it('the input transform is recorded as nmsparse.input and read back', async () => {
    const f = path.join(dir, 'input.safetensors');
    await saveModel(f, { w: randomTensor([2, 4], 'float32', 1) }, { input: { mean: 0.1307, std: 0.3081 } });
    expect(JSON.parse((await readSafetensorsHeader(f)).metadata['nmsparse.input'])).toEqual({ mean: 0.1307, std: 0.3081 });
    expect((await loadModel(f)).input).toEqual({ mean: 0.1307, std: 0.3081 });
    expect((await loadModel(ours)).input).toBeNull();
  });

  it('decompress: false keeps nm-form weights compressed only (no dense tensor made)', async () => {
    const m = await loadModel(ours, { decompress: false });
    expect([...m.compressed.keys()].sort()).toEqual(['layers.0.weight', 'layers.2.weight']);
    expect(m.tensors.has('layers.0.weight') || m.tensors.has('layers.0.weight.nm_values')).toBe(false);
    expect(m.tensors.has('layers.4.weight')).toBe(true);
    const full = await loadModel(ours);
    for (const k of m.compressed.keys()) expect(bytesOf(m.compressed.get(k)!.decompress()).equals(bytesOf(full.tensors.get(k)!)), k).toBe(true);
  });

  it("inferMlpArch finds the Sequential's prefix: none (a plain nn.Sequential), layers, or any module path", () => {
    const t = (out: number, inp: number) => randomTensor([out, inp], 'float32', out);
    const plain = new Map([['0.weight', t(8, 4)], ['0.bias', t(8, 1).reshape([8])], ['2.weight', t(3, 8)]]);
    const a = inferMlpArch(plain);
    expect(a).toEqual({ type: 'Sequential', layers: [{ type: 'Linear', in: 4, out: 8, bias: true }, { type: 'ReLU' }, { type: 'Linear', in: 8, out: 3, bias: false }] });
    expect([0, 2].map((i) => paramName(a, i, 'weight'))).toEqual(['0.weight', '2.weight']);
    const nested = new Map([...plain].map(([k, v]) => [`encoder.net.${k}`, v]));
    expect(inferMlpArch(nested).prefix).toBe('encoder.net');
    expect(paramName(inferMlpArch(nested), 2, 'weight')).toBe('encoder.net.2.weight');
    expect(() => inferMlpArch(new Map([...plain, ['head.0.weight', t(2, 3)]]))).toThrowError(/more than one Sequential.*head\.<i>\.weight/);
    expect(() => inferMlpArch(new Map([['fc1.weight', t(2, 3)]]))).toThrowError(/no tensors named <i>\.weight or <prefix>\.<i>\.weight/);
    expect(() => inferMlpArch(plain, 'layers')).toThrowError(/no tensors named layers\.<i>\.weight/);
  });
});

describe('Trainer checkpoints (lib/train/checkpoint.ts) are safetensors model files', () => {
  const nets = () => [
    ['mlp', (seed: number) => mlp({ inputs: 16, hidden: [32, 24], pattern: '2:4', recipe: createRecipe('srste'), seed })],
    ['cnn', (seed: number) => cnn({ channels: [4, 8], hidden: 16, pattern: '2:4', recipe: createRecipe('srste'), seed })],
  ] as const;

  for (const [kind, make] of nets()) {
    it(`${kind}: save, then load into a fresh network: parameters and masks bit for bit, metadata kept`, async () => {
      const a = make(1);
      const x = randomTensor([3, kind === 'mlp' ? 16 : 784], 'float32', 4);
      a.forward(x); // training-mode forward: the sparse layers compute their masks
      const f = path.join(dir, `ckpt-${kind}`);
      const { file, resume } = saveCheckpoint(a, f, { epochs: 3, note: 'ü' });
      expect(file).toBe(`${f}.safetensors`);
      expect(resume).toBe(`${f}.resume.safetensors`);
      const b = make(2);
      expect(loadCheckpoint(b, f)).toEqual({ epochs: 3, note: 'ü' });
      const pb = new Map(b.namedParameters());
      for (const [name, p] of a.namedParameters()) expect(bytesOf(pb.get(name)!.value).equals(bytesOf(p.value)), name).toBe(true);
      const sb = new Map(sparseWeights(b).map(({ name, s }) => [name, s]));
      for (const { name, s } of sparseWeights(a)) expect(bytesOf(sb.get(name)!.mask!).equals(bytesOf(s.mask!)), name).toBe(true);

      const m = await loadModel(file);
      expect(m.metadata.format).toBe('pt');
      expect(m.arch!.layers.map((l) => l.name)).toEqual(a.namedChildren().map(([n]) => n));
      const sparse = sparseWeights(a).map(({ name }) => name);
      expect(Object.keys(m.sparsity).sort()).toEqual([...sparse].sort());
      // The model file holds the model only: one tensor per parameter, as PyTorch's state_dict names them.
      expect([...m.tensors.keys()].sort()).toEqual(a.namedParameters().map(([n]) => n).sort());
      const training = (await loadSafetensors(resume!)).tensors;
      expect([...training.keys()].sort()).toEqual(sparse.flatMap((n) => [`${n}.dense`, `${n}.mask`]).sort());
      for (const name of sparse) {
        expect(m.sparsity[name]).toMatchObject({ pattern: '2:4', recipe: 'srste', form: 'dense' });
        expect(bytesOf(training.get(`${name}.dense`)!).equals(bytesOf(m.tensors.get(name)!)), `${name}.dense is W, not W ⊙ m`).toBe(false);
      }
      // A checkpoint of the older single-file form (training tensors beside the model) still resumes.
      const old = path.join(dir, `ckpt-${kind}-old.safetensors`);
      await saveModel(old, new Map([...m.tensors, ...training]), { sparsity: Object.fromEntries(sparse.map((n) => [n, '2:4'])), metadata: { 'nmsparse.train': '{}' } });
      const c = make(3);
      expect(loadCheckpoint(c, old)).toEqual({});
      const pc = new Map(c.namedParameters());
      for (const [name, p] of a.namedParameters()) expect(bytesOf(pc.get(name)!.value).equals(bytesOf(p.value)), `old form: ${name}`).toBe(true);
      if (kind === 'cnn') expect(m.tensors.get('conv2.weight')!.shape).toEqual([8, 4, 3, 3]); // PyTorch [out, in, kh, kw]
    });
  }

  it('a dense-recipe layer deploys dense; a wrong architecture is E_IO naming the tensor', async () => {
    const a = mlp({ inputs: 16, hidden: [32], pattern: '2:4', recipe: createRecipe('dense'), seed: 3 });
    a.forward(randomTensor([2, 16], 'float32', 1));
    const f = path.join(dir, 'ckpt-dense.safetensors');
    saveCheckpoint(a, f);
    const m = await loadModel(f);
    expect(m.sparsity).toEqual({});
    expect(bytesOf(m.tensors.get('fc1.weight')!).equals(bytesOf(a.namedParameters()[0][1].value))).toBe(true);
    await rejects(() => loadCheckpoint(mlp({ inputs: 16, hidden: [48], seed: 1 }), f), 'E_IO', 'fc1.weight');
    await rejects(() => loadCheckpoint(a, path.join(dir, 'nope')), 'E_IO', 'nope.safetensors');
  });

  it('saveModule writes a deployable file (pruned N:M weights, arch, sparsity), in both forms', async () => {
    const a = mlp({ inputs: 16, hidden: [32], pattern: '2:4', recipe: createRecipe('srste'), seed: 5 });
    for (const compressed of [false, true]) {
      const f = path.join(dir, `module-${compressed}.safetensors`);
      await saveModule(f, a, { compressed });
      const m = await loadModel(f);
      expect([...m.tensors.keys()].sort()).toEqual(['classifier.bias', 'classifier.weight', 'fc1.bias', 'fc1.weight']);
      expect(nm.check(m.tensors.get('fc1.weight')!, '2:4').ok).toBe(true);
      expect(m.sparsity['fc1.weight'].form).toBe(compressed ? 'nm' : 'dense');
      expect(archOf(a)).toEqual(m.arch);
    }
  });
});
