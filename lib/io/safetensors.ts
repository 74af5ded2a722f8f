/**
 * safetensors read/write (https://github.com/huggingface/safetensors, the format's own spec):
 *
 *   8 bytes   N, the header length, unsigned 64-bit little-endian
 *   N bytes   a UTF-8 JSON object {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
 *             padded with spaces to a multiple of 8 (so every tensor's data starts 8-byte aligned)
 *   the rest  the tensors' raw little-endian bytes, row-major; offsets are relative to the end of the header
 *
 * The writer lays a file out exactly as the reference serializer does (safetensors/src/tensor.rs `prepare`):
 * tensors sorted by descending dtype alignment (F32, BF16, F16, I8, U8), then by name (byte order); compact JSON
 * with `__metadata__` first and each entry's keys in the order dtype, shape, data_offsets; the data packed with
 * no gaps. Metadata keys, a hash map there, are sorted here so our files are reproducible.
 *
 * The reader validates everything before reading any data: header length against the file size, a header over
 * 100 MB (the reference's limit), UTF-8 and JSON errors, entry fields, unknown dtypes, shape × dtype size against
 * the byte range, ranges that overlap, leave gaps or run past the data (the reference requires the ranges to
 * tile the data section exactly). Every failure is an NmSparseError (E_IO, E_DTYPE or E_SHAPE) whose message
 * names the file and, where there is one, the tensor. Data is read through a file handle tensor by tensor.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { endianness } from 'node:os';
import { NmSparseError, describe, type ErrorCode } from '../errors.js';
import { allocPinnedStorage, type DType, type Storage } from '../dtype.js';
import { Tensor, numel } from '../tensor.js';

/** The reference implementation's limit on the header length. */
export const MAX_HEADER_BYTES = 100_000_000;

/** safetensors dtype names of the dtypes nmsparse stores. */
export const ST_DTYPE: Readonly<Record<DType, string>> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16', int8: 'I8', uint8: 'U8' };
const FROM_ST: Readonly<Record<string, DType>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', I8: 'int8', U8: 'uint8' };

/**
 * Every dtype of the format with its element size and its rank in the reference's `Dtype` enum (the writer sorts
 * by descending rank). Dtypes nmsparse has no tensor for still parse, so a file holding one (an I64 counter, say)
 * can be read apart from that tensor; reading that tensor is an E_DTYPE error.
 */
const FORMAT_DTYPES: Readonly<Record<string, { size: number; rank: number }>> = {
  BOOL: { size: 1, rank: 0 }, U8: { size: 1, rank: 1 }, I8: { size: 1, rank: 2 }, F8_E5M2: { size: 1, rank: 3 },
  F8_E4M3: { size: 1, rank: 4 }, I16: { size: 2, rank: 5 }, U16: { size: 2, rank: 6 }, F16: { size: 2, rank: 7 },
  BF16: { size: 2, rank: 8 }, I32: { size: 4, rank: 9 }, U32: { size: 4, rank: 10 }, F32: { size: 4, rank: 11 },
  F64: { size: 8, rank: 12 }, I64: { size: 8, rank: 13 }, U64: { size: 8, rank: 14 },
};

/** One header entry. `begin`/`end` are byte offsets relative to the start of the data section. */
export interface TensorInfo {
  name: string;
  /** The safetensors dtype name (F32, BF16, …). */
  format: string;
  /** The nmsparse dtype, or null for a format dtype nmsparse does not hold (F64, I64, …). */
  dtype: DType | null;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** Header length N (padding included). */
  headerBytes: number;
  /** Absolute file offset of the data section: 8 + N. */
  dataStart: number;
  /** Entries in file (offset) order. */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

export interface SafetensorsContents {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
  header: SafetensorsHeader;
}

/** What the writer takes: name → tensor (any device; moved to the CPU to write). */
export type TensorMap = Map<string, Tensor> | Record<string, Tensor>;

function ioError(code: ErrorCode, file: string, what: string, cause?: unknown): NmSparseError {
  return new NmSparseError(code, `${file}: ${what}`, cause === undefined ? undefined : { cause });
}

/** OS errors met while reading or writing (EISDIR, EIO, ENOSPC…) become E_IO naming the file. */
function asIoError(file: string, e: unknown, doing: string): unknown {
  return e instanceof NmSparseError ? e : ioError('E_IO', file, `cannot ${doing}: ${(e as Error)?.message ?? String(e)}`, e);
}

function checkHost(file: string): void {
  if (endianness() !== 'LE') throw ioError('E_UNSUPPORTED', file, 'safetensors data is little-endian and this host is big-endian');
}

function checkFile(file: unknown, arg: string): string {
  if (typeof file !== 'string' || file.length === 0) throw new NmSparseError('E_TYPE', `${arg}: got ${describe(file)}, expected a file path`);
  return file;
}

// ---------------------------------------------------------------------------------------------------------------
// Header parsing (pure: the caller supplies the first 8 bytes' value, the header bytes and the file size)

/** Validates the 8-byte length prefix against the file size; returns N. */
export function checkHeaderLength(file: string, prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || prefix.length < 8)
    throw ioError('E_IO', file, `file is ${fileSize} bytes, too short for a safetensors file (at least 8 bytes for the header length)`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES))
    throw ioError('E_IO', file, `header length ${n} is over the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file, or a corrupted one)`);
  const len = Number(n);
  if (len < 2) throw ioError('E_IO', file, `header length ${len} is too short for a JSON object`);
  if (8 + len > fileSize) throw ioError('E_IO', file, `header length ${len} runs past the end of the file (${fileSize} bytes): truncated or corrupted`);
  return len;
}

const isSize = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Parses and validates the JSON header. Throws a typed error naming the file and the tensor. */
export function parseHeader(file: string, headerBytes: Uint8Array, fileSize: number): SafetensorsHeader {
  const dataStart = 8 + headerBytes.length;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch (e) {
    throw ioError('E_IO', file, 'header is not valid UTF-8', e);
  }
  if (text[0] !== '{') throw ioError('E_IO', file, `header does not start with '{' (got ${describe(text.slice(0, 16))})`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw ioError('E_IO', file, `header is not valid JSON: ${(e as Error).message}`, e);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw ioError('E_IO', file, 'header is not a JSON object');

  const metadata: Record<string, string> = {};
  const entries: TensorInfo[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
        throw ioError('E_IO', file, `__metadata__ is ${describe(raw)}, expected an object of strings`);
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw ioError('E_IO', file, `__metadata__[${JSON.stringify(k)}] is ${describe(v)}, expected a string`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `tensor ${JSON.stringify(name)}`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
      throw ioError('E_IO', file, `${where}: entry is ${describe(raw)}, expected {dtype, shape, data_offsets}`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in FORMAT_DTYPES))
      throw ioError('E_DTYPE', file, `${where}: dtype ${describe(dtype)} is not a safetensors dtype (nmsparse reads F32, F16, BF16, I8, U8)`);
    if (!Array.isArray(shape) || !shape.every(isSize))
      throw ioError('E_SHAPE', file, `${where}: shape ${describe(shape)} is not an array of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSize))
      throw ioError('E_IO', file, `${where}: data_offsets ${describe(offsets)} is not [begin, end] with non-negative integers`);
    const [begin, end] = offsets as number[];
    if (end < begin) throw ioError('E_IO', file, `${where}: data_offsets [${begin}, ${end}] ends before it begins`);
    const count = numel(shape as number[]);
    const bytes = count * FORMAT_DTYPES[dtype].size;
    if (!Number.isSafeInteger(bytes) || bytes !== end - begin)
      throw ioError('E_SHAPE', file, `${where}: shape [${shape.join(', ')}] of ${dtype} needs ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
    entries.push({ name, format: dtype, dtype: FROM_ST[dtype] ?? null, shape: [...(shape as number[])], begin, end });
  }

  // The ranges must tile the data section: sorted by offset, each begins where the previous one ended.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  const dataBytes = fileSize - dataStart;
  let at = 0;
  let prev: TensorInfo | null = null;
  for (const e of entries) {
    if (e.begin < at)
      throw ioError('E_IO', file, `tensor ${JSON.stringify(e.name)}: data_offsets [${e.begin}, ${e.end}] overlap tensor ${JSON.stringify(prev!.name)} [${prev!.begin}, ${prev!.end}]`);
    if (e.begin > at)
      throw ioError('E_IO', file, `tensor ${JSON.stringify(e.name)}: data_offsets [${e.begin}, ${e.end}] leave a gap after byte ${at} of the data section`);
    if (e.end > dataBytes)
      throw ioError('E_IO', file, `tensor ${JSON.stringify(e.name)}: data_offsets [${e.begin}, ${e.end}] run past the end of the data section (${dataBytes} bytes): truncated file`);
    at = e.end;
    prev = e;
  }
  if (at !== dataBytes)
    throw ioError('E_IO', file, `the tensors cover ${at} bytes but the data section holds ${dataBytes}: trailing bytes or a corrupted header`);
  return { file, fileSize, headerBytes: headerBytes.length, dataStart, tensors: new Map(entries.map((e) => [e.name, e])), metadata };
}

/** A tensor to receive the bytes of `info`, or E_DTYPE when nmsparse has no such dtype. */
function allocFor(file: string, info: TensorInfo): Tensor {
  if (info.dtype === null)
    throw ioError('E_DTYPE', file, `tensor ${JSON.stringify(info.name)}: dtype ${info.format} is not supported (nmsparse reads F32, F16, BF16, I8, U8)`);
  // Pinned: what files hold is weights, long-lived and read by async products.
  return new Tensor(info.shape, info.dtype, allocPinnedStorage(info.dtype, numel(info.shape)));
}

const bytesOf = (s: Storage): Uint8Array => new Uint8Array(s.buffer, s.byteOffset, s.byteLength);

function pickNames(file: string, header: SafetensorsHeader, names: readonly string[] | undefined): TensorInfo[] {
  if (names === undefined) return [...header.tensors.values()];
  return names.map((n) => {
    const info = header.tensors.get(n);
    if (!info) throw ioError('E_IO', file, `no tensor named ${JSON.stringify(n)} (the file holds ${header.tensors.size})`);
    return info;
  });
}

export interface ReadOptions {
  /** Read only these tensors (each must exist). Default: all. */
  names?: readonly string[];
}

// ---------------------------------------------------------------------------------------------------------------
// Reading through a file handle (async: the event loop keeps running; sync for scripts)

/** The header only: names, dtypes, shapes and metadata, validated, without reading any tensor data. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const f = checkFile(file, 'file');
  const h = await openForRead(f);
  try {
    return await readHeaderAsync(f, h);
  } catch (e) {
    throw asIoError(f, e, 'read');
  } finally {
    await h.close();
  }
}

/** Reads a safetensors file (all tensors, or `names`) onto the CPU. */
export async function loadSafetensors(file: string, opts: ReadOptions = {}): Promise<SafetensorsContents> {
  const f = checkFile(file, 'file');
  checkHost(f);
  const h = await openForRead(f);
  try {
    const header = await readHeaderAsync(f, h);
    const tensors = new Map<string, Tensor>();
    for (const info of pickNames(f, header, opts.names)) {
      const t = allocFor(f, info);
      await readFully(f, info, bytesOf(t.storage()), header.dataStart + info.begin, (b, o, n, p) => h.read(b, o, n, p).then((r) => r.bytesRead));
      tensors.set(info.name, t);
    }
    return { tensors, metadata: header.metadata, header };
  } catch (e) {
    throw asIoError(f, e, 'read');
  } finally {
    await h.close();
  }
}

/** Synchronous loadSafetensors (blocks the event loop: for scripts and tests). */
export function loadSafetensorsSync(file: string, opts: ReadOptions = {}): SafetensorsContents {
  const f = checkFile(file, 'file');
  checkHost(f);
  let fd: number;
  try {
    fd = openSync(f, 'r');
  } catch (e) {
    throw asIoError(f, e, 'open');
  }
  try {
    const size = fstatSync(fd).size;
    const prefix = new Uint8Array(8);
    readSync(fd, prefix, 0, 8, 0);
    const len = checkHeaderLength(f, prefix, size);
    const hb = new Uint8Array(len);
    if (readSync(fd, hb, 0, len, 8) !== len) throw ioError('E_IO', f, 'the header could not be read in full: the file changed while being read');
    const header = parseHeader(f, hb, size);
    const tensors = new Map<string, Tensor>();
    for (const info of pickNames(f, header, opts.names)) {
      const t = allocFor(f, info);
      const dst = bytesOf(t.storage());
      for (let done = 0; done < dst.length; ) {
        const n = readSync(fd, dst, done, dst.length - done, header.dataStart + info.begin + done);
        if (n === 0) throw ioError('E_IO', f, `tensor ${JSON.stringify(info.name)}: the file ended early (it changed while being read)`);
        done += n;
      }
      tensors.set(info.name, t);
    }
    return { tensors, metadata: header.metadata, header };
  } catch (e) {
    throw asIoError(f, e, 'read');
  } finally {
    closeSync(fd);
  }
}

type FileHandle = Awaited<ReturnType<typeof open>>;

async function openForRead(file: string): Promise<FileHandle> {
  try {
    return await open(file, 'r');
  } catch (e) {
    throw asIoError(file, e, 'open');
  }
}

async function readHeaderAsync(file: string, h: FileHandle): Promise<SafetensorsHeader> {
  const size = (await h.stat()).size;
  const prefix = new Uint8Array(8);
  await h.read(prefix, 0, 8, 0);
  const len = checkHeaderLength(file, prefix, size);
  const hb = new Uint8Array(len);
  const { bytesRead } = await h.read(hb, 0, len, 8);
  if (bytesRead !== len) throw ioError('E_IO', file, 'the header could not be read in full: the file changed while being read');
  return parseHeader(file, hb, size);
}

async function readFully(file: string, info: TensorInfo, dst: Uint8Array, pos: number,
  read: (b: Uint8Array, off: number, n: number, pos: number) => Promise<number>): Promise<void> {
  // Chunks of at most 1 GiB: the largest single read Linux performs anyway.
  for (let done = 0; done < dst.length; ) {
    const n = await read(dst, done, Math.min(dst.length - done, 1 << 30), pos + done);
    if (n === 0) throw ioError('E_IO', file, `tensor ${JSON.stringify(info.name)}: the file ended early (it changed while being read)`);
    done += n;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

export interface WriteOptions {
  /** String → string metadata stored as `__metadata__`. */
  metadata?: Record<string, string>;
}

interface Plan {
  header: Uint8Array;
  parts: Uint8Array[];
}

/** Orders and lays out the tensors as the reference serializer does; returns the padded header and the data. */
export function planSafetensors(tensors: TensorMap, opts: WriteOptions = {}): Plan {
  if (tensors === null || typeof tensors !== 'object')
    throw new NmSparseError('E_TYPE', `tensors: got ${describe(tensors)}, expected a Map or an object of name → Tensor`);
  const list: { name: string; t: Tensor; key: Buffer }[] = [];
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [name, t] of entries) {
    if (typeof name !== 'string' || name === '' || name === '__metadata__')
      throw new NmSparseError('E_VALUE', `tensors: name ${describe(name)} is not allowed (a non-empty string other than "__metadata__")`);
    if (!(t instanceof Tensor)) throw new NmSparseError('E_TYPE', `tensors[${JSON.stringify(name)}]: got ${describe(t)}, expected a Tensor`);
    if (t.disposed) throw new NmSparseError('E_DISPOSED', `tensors[${JSON.stringify(name)}]: the tensor was disposed`);
    list.push({ name, t: t.device === 'cpu' ? t : t.to('cpu'), key: Buffer.from(name, 'utf8') });
  }
  const rank = (t: Tensor) => FORMAT_DTYPES[ST_DTYPE[t.dtype]].rank;
  list.sort((a, b) => rank(b.t) - rank(a.t) || Buffer.compare(a.key, b.key));

  const header: Record<string, unknown> = {};
  const md = opts.metadata;
  if (md !== undefined) {
    if (md === null || typeof md !== 'object' || Array.isArray(md))
      throw new NmSparseError('E_TYPE', `options.metadata: got ${describe(md)}, expected an object of strings`);
    const sorted: Record<string, string> = {};
    for (const k of Object.keys(md).sort()) {
      if (typeof md[k] !== 'string') throw new NmSparseError('E_TYPE', `options.metadata[${JSON.stringify(k)}]: got ${describe(md[k])}, expected a string`);
      sorted[k] = md[k];
    }
    header.__metadata__ = sorted;
  }
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const { name, t } of list) {
    const bytes = bytesOf(t.storage());
    // defineProperty: a tensor named "__proto__" must become a key, not a prototype.
    Object.defineProperty(header, name, {
      value: { dtype: ST_DTYPE[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes.length] },
      enumerable: true, writable: true, configurable: true,
    });
    offset += bytes.length;
    parts.push(bytes);
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Buffer.alloc(json.length + ((8 - (json.length % 8)) % 8), 0x20);
  json.copy(padded);
  if (padded.length > MAX_HEADER_BYTES) throw new NmSparseError('E_VALUE', `tensors: the header would be ${padded.length} bytes, over the ${MAX_HEADER_BYTES}-byte limit`);
  const out = Buffer.alloc(8 + padded.length);
  out.writeBigUInt64LE(BigInt(padded.length), 0);
  padded.copy(out, 8);
  return { header: out, parts };
}

/** The whole file in memory (small files, tests). */
export function serializeSafetensors(tensors: TensorMap, opts: WriteOptions = {}): Buffer {
  checkHost('serializeSafetensors');
  const { header, parts } = planSafetensors(tensors, opts);
  return Buffer.concat([header, ...parts]);
}

const tempName = (file: string) => `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;

/**
 * Writes a safetensors file: to a temporary file beside it, flushed, then renamed over `file`, so a reader never
 * sees a half-written checkpoint.
 */
export async function saveSafetensors(file: string, tensors: TensorMap, opts: WriteOptions = {}): Promise<void> {
  const f = checkFile(file, 'file');
  checkHost(f);
  const { header, parts } = planSafetensors(tensors, opts);
  const tmp = tempName(f);
  try {
    const h = await open(tmp, 'w');
    try {
      let pos = 0;
      for (const p of [header, ...parts]) {
        for (let done = 0; done < p.length; ) {
          const { bytesWritten } = await h.write(p, done, Math.min(p.length - done, 1 << 30), pos);
          done += bytesWritten;
          pos += bytesWritten;
        }
      }
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, f);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw asIoError(f, e, 'write');
  }
}

/** Synchronous saveSafetensors. */
export function saveSafetensorsSync(file: string, tensors: TensorMap, opts: WriteOptions = {}): void {
  const f = checkFile(file, 'file');
  checkHost(f);
  const { header, parts } = planSafetensors(tensors, opts);
  const tmp = tempName(f);
  try {
    const fd = openSync(tmp, 'w');
    try {
      for (const p of [header, ...parts]) for (let done = 0; done < p.length; ) done += writeSync(fd, p, done, Math.min(p.length - done, 1 << 30));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, f);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* not created */ }
    throw asIoError(f, e, 'write');
  }
}

/** Parses a whole file held in memory (an upload, a test buffer). Same validation as loadSafetensors. */
export function parseSafetensors(buf: Uint8Array, name = '<buffer>', opts: ReadOptions = {}): SafetensorsContents {
  checkHost(name);
  if (!(buf instanceof Uint8Array)) throw new NmSparseError('E_TYPE', `buf: got ${describe(buf)}, expected a Uint8Array (the file's bytes)`);
  const len = checkHeaderLength(name, buf.subarray(0, 8), buf.length);
  const header = parseHeader(name, buf.subarray(8, 8 + len), buf.length);
  const tensors = new Map<string, Tensor>();
  for (const info of pickNames(name, header, opts.names)) {
    const t = allocFor(name, info);
    bytesOf(t.storage()).set(buf.subarray(header.dataStart + info.begin, header.dataStart + info.end));
    tensors.set(info.name, t);
  }
  return { tensors, metadata: header.metadata, header };
}
