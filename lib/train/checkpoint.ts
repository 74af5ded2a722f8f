/**
 * Training checkpoints as JSON-described raw float32: `<base>.json` lists every tensor (name, dtype, shape,
 * byte offset, layout) and the run's metadata; `<base>.bin` holds the tensors' bytes back to back, little-endian.
 * Saved: every parameter (the dense weights the optimizer updates), and for each sparse layer its current mask
 * (`<weight>.mask`, uint8) and the N:M weight it deploys (`<weight>.deployed`, W ⊙ m). Conv2d weights are stored
 * as the layer holds them, [out, kh, kw, in] (`layout: "OHWI"`); PyTorch's order is [out, in, kh, kw].
 * (lib/io/model-file.ts writes PyTorch-compatible safetensors; this format is the trainer's own.)
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import path from 'node:path';
import { NmSparseError, fail } from '../errors.js';
import { patternString } from '../pattern.js';
import { Tensor } from '../tensor.js';
import type { Module } from '../nn/module.js';
import { sparseWeights } from './trainer.js';

export interface CheckpointEntry {
  name: string;
  dtype: 'float32' | 'uint8';
  shape: number[];
  offset: number;
  bytes: number;
  layout?: string;
}

export interface CheckpointFile {
  format: 'nmsparse-checkpoint';
  version: 1;
  meta: Record<string, unknown>;
  sparse: Record<string, { pattern: string; recipe: string }>;
  tensors: CheckpointEntry[];
}

const base = (file: string): string => file.replace(/\.(json|bin)$/, '');

/** Writes `<file>.json` and `<file>.bin` (a trailing .json/.bin on `file` is dropped). Returns both paths. */
export function saveCheckpoint(model: Module, file: string, meta: Record<string, unknown> = {}): { json: string; bin: string } {
  if (endianness() !== 'LE') throw new NmSparseError('E_UNSUPPORTED', 'saveCheckpoint: big-endian hosts are not supported');
  const b = base(file);
  const entries: CheckpointEntry[] = [];
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const add = (name: string, t: Tensor, layout?: string) => {
    const host = t.device === 'cpu' ? t : t.to('cpu');
    if (host.dtype !== 'float32' && host.dtype !== 'uint8') fail('E_DTYPE', name, host, 'a float32 or uint8 tensor');
    const s = host.storage();
    const bytes = new Uint8Array(s.buffer, s.byteOffset, s.byteLength);
    entries.push({ name, dtype: host.dtype, shape: [...host.shape], offset, bytes: bytes.byteLength, ...(layout ? { layout } : {}) });
    chunks.push(bytes);
    offset += bytes.byteLength;
  };
  for (const [name, p] of model.namedParameters()) add(name, p.value, p.layout);
  const sparse: CheckpointFile['sparse'] = {};
  for (const { name, s } of sparseWeights(model)) {
    sparse[name] = { pattern: patternString(s.pattern), recipe: s.recipe.name };
    if (s.mask) add(`${name}.mask`, s.mask.reshape([...s.param.shape]), s.param.layout);
    add(`${name}.deployed`, s.deployWeight().reshape([...s.param.shape]), s.param.layout);
  }
  const doc: CheckpointFile = { format: 'nmsparse-checkpoint', version: 1, meta, sparse, tensors: entries };
  mkdirSync(path.dirname(path.resolve(b)), { recursive: true });
  const bin = new Uint8Array(offset);
  let at = 0;
  for (const c of chunks) { bin.set(c, at); at += c.byteLength; }
  try {
    writeFileSync(`${b}.bin`, bin);
    writeFileSync(`${b}.json`, JSON.stringify(doc, null, 1) + '\n');
  } catch (e) {
    throw new NmSparseError('E_IO', `saveCheckpoint: cannot write ${b}.json/.bin: ${(e as Error).message}`, { cause: e });
  }
  return { json: `${b}.json`, bin: `${b}.bin` };
}

/**
 * Reads a checkpoint into `model` (same architecture): every parameter, and the masks of sparse layers.
 * Throws E_IO naming the tensor when something is missing or of the wrong shape. Returns the metadata.
 */
export function loadCheckpoint(model: Module, file: string): Record<string, unknown> {
  const b = base(file);
  let doc: CheckpointFile, bin: Uint8Array;
  try {
    doc = JSON.parse(readFileSync(`${b}.json`, 'utf8')) as CheckpointFile;
    bin = readFileSync(`${b}.bin`);
  } catch (e) {
    throw new NmSparseError('E_IO', `loadCheckpoint: cannot read ${b}.json/.bin: ${(e as Error).message}`, { cause: e });
  }
  if (doc.format !== 'nmsparse-checkpoint' || doc.version !== 1) fail('E_IO', `${b}.json`, doc.format, "an nmsparse-checkpoint, version 1");
  const byName = new Map(doc.tensors.map((t) => [t.name, t]));
  const read = (name: string, shape: readonly number[], dtype: 'float32' | 'uint8'): Uint8Array => {
    const e = byName.get(name);
    if (!e) fail('E_IO', name, undefined, `a tensor in ${b}.json`);
    if (e.dtype !== dtype || e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i]) || e.offset + e.bytes > bin.byteLength)
      fail('E_IO', name, e.shape, `a ${dtype} tensor [${shape.join(', ')}] inside ${b}.bin`);
    return bin.subarray(e.offset, e.offset + e.bytes);
  };
  for (const [name, p] of model.namedParameters()) {
    const bytes = read(name, p.shape, 'float32');
    const host = new Float32Array(bytes.slice().buffer);
    p.value = p.value.device === 'cpu' ? new Tensor(p.shape, 'float32', host) : new Tensor(p.shape, 'float32', host).to(p.value.device);
  }
  for (const { name, s } of sparseWeights(model)) {
    if (!byName.has(`${name}.mask`)) continue;
    const m = new Tensor([s.rows, s.cols], 'uint8', read(`${name}.mask`, s.param.shape, 'uint8').slice());
    s.mask = s.param.value.device === 'cpu' ? m : m.to(s.param.value.device);
    s.maskPattern = s.pattern;
  }
  return doc.meta;
}
