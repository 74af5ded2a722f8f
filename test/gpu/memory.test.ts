// Device memory: transfers round-trip bit for bit, dispose() is idempotent and frees at once, finalizers free what
// nobody disposed, 10,000 allocate/compute/dispose cycles leave no memory behind, out-of-memory is a typed E_OOM
// after which the process goes on, and a dispose() during an asynchronous download is safe.
import { describe, expect, it } from 'vitest';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { nm, tensor, zeros, NmSparseError, type DType } from '../../lib/index.js';
import { cudaBackend, memStats, synchronize } from '../../lib/cuda.js';
import { randomTensor, sameBits } from '../helpers.js';
import { gpuUsable } from './gpu-helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const DTYPES: DType[] = ['float32', 'float16', 'bfloat16', 'int8', 'uint8'];

async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}

describe.skipIf(!gpuUsable)('transfers', () => {
  it('to(cuda).to(cpu), dataSync() and await data() return the same bits, NaN payloads included', async () => {
    for (const dtype of DTYPES) {
      const t = randomTensor([37, 129], dtype, 1);
      if (dtype === 'float16' || dtype === 'bfloat16') (t.storage() as Uint16Array).set([0x7e01, 0xfc00, 0x8000, 0x0001], 0);
      if (dtype === 'float32') (t.storage() as Float32Array).set([NaN, -0, Infinity, 1e-45], 0);
      const g = t.to('cuda');
      expect(g.device).toBe('cuda');
      expect(g.bytes).toBe(t.bytes);
      expect(sameBits(g.to('cpu'), t)).toBe(true);
      expect(Buffer.from(g.dataSync().buffer).equals(Buffer.from(t.storage().buffer))).toBe(true);
      const d = await g.data();
      expect(Buffer.from(d.buffer).equals(Buffer.from(t.storage().buffer))).toBe(true);
      g.dispose();
    }
  });

  it('empty tensors, reshape (shared storage) and clone', () => {
    const e = zeros([0, 4]).to('cuda');
    expect(e.to('cpu').shape).toEqual([0, 4]);
    const t = randomTensor([6, 8], 'float32', 2);
    const g = t.to('cuda');
    const r = g.reshape(4, 12);
    expect(sameBits(r.to('cpu'), t.reshape(4, 12))).toBe(true);
    const c = g.clone();
    g.dispose();
    expect(r.disposed).toBe(true);  // reshape shares the storage
    expect(sameBits(c.to('cpu'), t)).toBe(true);
  });

  it('dispose() is idempotent; use after dispose throws E_DISPOSED', () => {
    const g = tensor([1, 2, 3, 4], [4]).to('cuda');
    g.dispose();
    g.dispose();
    expect(() => g.dataSync()).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    expect(() => nm.mask(g, '2:4')).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    const s = nm.compress(randomTensor([8, 16], 'float16', 3).to('cuda'), '2:4');
    s.dispose();
    s.dispose();
    expect(() => s.decompress()).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
  });

  it('dispose() while await data() is in flight still delivers the data', async () => {
    const t = randomTensor([1024, 1024], 'float32', 4);
    const g = t.to('cuda');
    const p = g.data();
    g.dispose();
    const d = await p;
    expect(Buffer.from(d.buffer).equals(Buffer.from(t.storage().buffer))).toBe(true);
  });
});

describe.skipIf(!gpuUsable)('no leaks', () => {
  it('10,000 allocate / compute / dispose cycles return device memory to the baseline', async () => {
    const w = randomTensor([64, 128], 'float16', 5), x = randomTensor([16, 128], 'float16', 6);
    const cycle = () => {
      const wg = w.to('cuda'), xg = x.to('cuda');
      const m = nm.mask(wg, '2:4');
      const p = nm.prune(wg, '2:4');
      const s = nm.compress(wg, '2:4');
      const y = nm.linear(xg, s);
      const d = s.decompress();
      for (const t of [wg, xg, m, p, s, y, d]) t.dispose();
    };
    for (let i = 0; i < 20; i++) cycle();  // plans, workspaces and caches are made here, once
    synchronize();
    const base = memStats();
    for (let i = 0; i < 10_000; i++) cycle();
    synchronize();
    const after = memStats();
    expect(after.liveBuffers).toBe(base.liveBuffers);
    expect(after.liveBytes).toBe(base.liveBytes);
    // The pool is trimmed before the reading: what the device reports free must not have shrunk by more than noise.
    expect(base.freeBytes - after.freeBytes).toBeLessThan(64 * 2 ** 20);
  });

  it('finalizers free what nobody disposed', async () => {
    await settle();
    synchronize();
    const base = memStats();
    (() => {
      for (let i = 0; i < 2000; i++) {
        randomTensor([32, 64], 'float32', i % 7).to('cuda');
        nm.compress(randomTensor([16, 64], 'float16', i % 5).to('cuda'), '2:4');
      }
    })();
    let now = memStats(), tries = 0;
    while (now.liveBuffers > base.liveBuffers && tries++ < 50) {
      await settle();
      now = memStats();
    }
    expect(now.liveBuffers).toBe(base.liveBuffers);
    expect(now.liveBytes).toBe(base.liveBytes);
  });
});

describe.skipIf(!gpuUsable)('out of memory', () => {
  it('an impossible allocation is E_OOM and the process goes on', () => {
    const total = memStats().totalBytes;
    let err: unknown;
    try {
      cudaBackend.alloc(total * 4);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NmSparseError);
    expect((err as NmSparseError).code).toBe('E_OOM');
    const t = randomTensor([8, 16], 'float16', 1);
    expect(sameBits(nm.prune(t.to('cuda'), '2:4').to('cpu'), nm.prune(t, '2:4'))).toBe(true);
  });
});
