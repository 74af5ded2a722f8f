// The addon contract (lib/native.ts): the loaded addon exports exactly the declared functions, and the enum codes
// lib/ sends (dtype, activation) are the ones native/core defines; trimHostMemory gives freed heap back.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { native, addonNames } from '../lib/native.js';
import { DTYPES } from '../lib/dtype.js';
import { ACTIVATIONS } from '../lib/gemm.js';

describe('addon contract', () => {
  it('exports exactly the functions lib/native.ts declares (the CUDA ones in a CUDA build)', () => {
    const expected = [...addonNames.cpu, ...(native.buildInfo().cuda ? addonNames.cuda : [])].sort();
    expect(Object.keys(native).sort()).toEqual(expected);
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
