// backendInfo() and the 'cuda' device on a machine without a usable GPU (CI, laptops): the reason is reported
// exactly, moving a tensor to 'cuda' fails with E_DEVICE carrying that reason, and the library loader looks where
// docs/design.md §3 says, in that order, with a clear message for each way a library can be unusable. The loader cases run
// the addon in child processes with a controlled environment and fake libraries (built with the system C
// compiler, skipped when there is none). Nothing here needs a GPU; test/gpu/ covers the GPU itself.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NmSparseError, randn, nm } from '../lib/index.js';
import { addonPath } from '../lib/native.js';
import { backendInfo, formatBackendInfo } from '../lib/backend-info.js';
import { cudaBuilt, cudaBackend } from '../lib/cuda.js';
import { backendFor } from '../lib/device.js';

const info = backendInfo();
const usable = info.cuda.usable;

describe('backendInfo()', () => {
  it('describes the CPU side', () => {
    expect(info.cpu.threads).toBeGreaterThanOrEqual(1);
    expect(typeof info.cpu.isa).toBe('string');
  });

  it('says whether CUDA was built, and why it is unusable when it is', () => {
    expect(info.cuda.built).toBe(cudaBuilt);
    if (!info.cuda.built) {
      expect(info.cuda.usable).toBe(false);
      expect(info.cuda.reason).toMatch(/no CUDA backend/);
      return;
    }
    expect(info.cuda.runtime).toMatch(/^\d+\.\d+$/);
    expect(info.cuda.cusparselt).toBeDefined();
    expect(info.cuda.cublaslt).toBeDefined();
    if (usable) {
      expect(info.cuda.reason).toBeNull();
      expect(info.cuda.device?.name).toBeTruthy();
    } else {
      expect(info.cuda.reason).toMatch(/no NVIDIA driver|driver supports CUDA|no CUDA device|sm_\d+|cuSPARSELt|NMSPARSE_CUDA_DEVICE|cudaGet/);
    }
  });

  it('formats as text', () => {
    const text = formatBackendInfo(info);
    expect(text).toMatch(/^cpu: \d+ threads/);
    expect(text).toMatch(/cuda: /);
    if (!usable && info.cuda.reason) expect(text).toContain(info.cuda.reason);
  });
});

describe.skipIf(usable)("'cuda' without a usable GPU", () => {
  it("t.to('cuda') throws E_DEVICE with the reason", () => {
    const t = randn([4, 8], { seed: 1 });
    let err: unknown;
    try {
      t.to('cuda');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NmSparseError);
    expect((err as NmSparseError).code).toBe('E_DEVICE');
    expect((err as NmSparseError).message).toContain(info.cuda.reason!);
    expect(t.disposed).toBe(false);
    expect(nm.prune(t, '2:4').device).toBe('cpu');  // the CPU still works
  });

  it('tensor(..., { device: "cuda" }) and randn(..., { device: "cuda" }) throw E_DEVICE', () => {
    expect(() => randn([2, 4], { device: 'cuda' })).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
  });

  it('backendFor("cuda") and the backend itself give the same reason', () => {
    expect(() => backendFor('cuda')).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
    if (cudaBuilt) expect(cudaBackend.unavailableReason()).toBe(info.cuda.reason);
  });

  it.skipIf(!cudaBuilt)('native device calls refuse with E_DEVICE instead of crashing', async () => {
    const { native } = await import('../lib/native.js');
    expect(() => native.cudaAlloc(16)).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
    expect(() => native.cudaUpload(new Float32Array(4))).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
    expect(() => native.cudaSynchronize()).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
    expect(() => native.cudaMemStats()).toThrow(expect.objectContaining({ code: 'E_DEVICE' }));
  });
});

// ---- the loader, in child processes ---------------------------------------------------------------------------

type Probe = {
  usable: boolean;
  reason: string | null;
  cusparselt: { loaded: boolean; path?: string; version?: string; error?: string };
  cublaslt: { loaded: boolean; path?: string; version?: string; error?: string };
};

/** cudaInfo() of the addon in a fresh process whose environment is exactly `env` (plus PATH and HOME). */
function probeWith(env: Record<string, string>): Probe {
  const script = `process.stdout.write(JSON.stringify(require(${JSON.stringify(addonPath)}).cudaInfo()))`;
  const r = spawnSync(process.execPath, ['-e', script], {
    env: { PATH: process.env.PATH ?? '', HOME: path.join(scratch, 'home'), ...env },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Probe;
}

function hasCompiler(): boolean {
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const scratch = mkdtempSync(path.join(tmpdir(), 'nmsparse-loader-'));
mkdirSync(path.join(scratch, 'home'), { recursive: true });

/** A fake libcusparseLt.so.0 in `dir` that reports version major.minor.patch (and, when `full`, every symbol). */
function fakeCusparseLt(dir: string, version: [number, number, number], full: boolean): void {
  mkdirSync(dir, { recursive: true });
  const names = full
    ? ['Init', 'Destroy', 'GetVersion', 'DenseDescriptorInit', 'StructuredDescriptorInit', 'MatDescriptorDestroy',
       'MatDescSetAttribute', 'MatmulDescriptorInit', 'MatmulDescSetAttribute', 'MatmulAlgSelectionInit',
       'MatmulAlgSetAttribute', 'MatmulAlgGetAttribute', 'MatmulGetWorkspace', 'MatmulPlanInit', 'MatmulPlanDestroy',
       'Matmul', 'MatmulSearch', 'SpMMAPruneCheck', 'SpMMACompressedSize', 'SpMMACompress', 'MatmulAlgSelectionDestroy']
    : ['Init'];
  const src = [
    `int cusparseLtGetProperty(int type, int* v) { *v = type == 0 ? ${version[0]} : type == 1 ? ${version[1]} : ${version[2]}; return 0; }`,
    ...names.map((n) => `int cusparseLt${n}(void) { return 1; }`),
  ].join('\n');
  writeFileSync(path.join(dir, 'fake.c'), src);
  execFileSync('cc', ['-shared', '-fPIC', '-o', path.join(dir, 'libcusparseLt.so.0'), path.join(dir, 'fake.c')]);
}

describe.skipIf(!cudaBuilt)('library search (docs/design.md §3)', () => {
  it('reports where it looked when cuSPARSELt is nowhere', () => {
    const p = probeWith({ NMSPARSE_CUDA_LIBS: path.join(scratch, 'empty') });
    if (p.cusparselt.loaded) return;  // a system-wide install (ld.so.conf) answers first: nothing to assert
    expect(p.cusparselt.error).toMatch(/libcusparseLt\.so\.0\) not found in the loader path/);
    expect(p.cusparselt.error).toMatch(/NMSPARSE_CUDA_LIBS=.*empty: not a directory/);
    if (!usable) expect(p.usable).toBe(false);
  });

  it('looks in NVIDIA wheels under PYTHONPATH (site-packages/nvidia/cusparselt/lib)', () => {
    const site = path.join(scratch, 'site1');
    const lib = path.join(site, 'nvidia', 'cusparselt', 'lib');
    mkdirSync(lib, { recursive: true });
    writeFileSync(path.join(lib, 'libcusparseLt.so.0'), 'not an ELF file');
    const p = probeWith({ PYTHONPATH: site });
    if (p.cusparselt.loaded) return;
    expect(p.cusparselt.error).toContain(path.join(lib, 'libcusparseLt.so.0'));
    expect(p.cusparselt.error).toMatch(/invalid ELF header|file too short/);
  });

  it.skipIf(!hasCompiler())('refuses cuSPARSELt older than 0.6 and names the version', () => {
    const dir = path.join(scratch, 'old');
    fakeCusparseLt(dir, [0, 5, 2], true);
    const p = probeWith({ NMSPARSE_CUDA_LIBS: dir });
    expect(p.cusparselt.loaded).toBe(false);
    expect(p.cusparselt.version).toBe('0.5.2');
    expect(p.cusparselt.path).toBe(path.join(dir, 'libcusparseLt.so.0'));
    expect(p.cusparselt.error).toMatch(/0\.5\.2 .* is too old: nmsparse needs >= 0\.6\.0/);
    if (!usable) expect(p.usable).toBe(false);
  });

  it.skipIf(!hasCompiler())('NMSPARSE_CUDA_LIBS wins over the wheels', () => {
    const dir = path.join(scratch, 'old2');
    fakeCusparseLt(dir, [0, 5, 0], true);
    const site = path.join(scratch, 'site2');
    fakeCusparseLt(path.join(site, 'nvidia', 'cusparselt', 'lib'), [0, 8, 1], true);
    const p = probeWith({ NMSPARSE_CUDA_LIBS: dir, PYTHONPATH: site });
    expect(p.cusparselt.path).toBe(path.join(dir, 'libcusparseLt.so.0'));
    const q = probeWith({ PYTHONPATH: site });
    expect(q.cusparselt.path).toBe(path.join(site, 'nvidia', 'cusparselt', 'lib', 'libcusparseLt.so.0'));
    expect(q.cusparselt.version).toBe('0.8.1');
    expect(q.cusparselt.loaded).toBe(true);  // every entry point is there (they are never called without a GPU)
  });

  it.skipIf(!hasCompiler())('names the missing entry points of an incomplete library', () => {
    const dir = path.join(scratch, 'partial');
    fakeCusparseLt(dir, [0, 7, 1], false);
    const p = probeWith({ NMSPARSE_CUDA_LIBS: dir });
    expect(p.cusparselt.loaded).toBe(false);
    expect(p.cusparselt.error).toMatch(/0\.7\.1 .* lacks: cusparseLtDestroy, .*cusparseLtMatmul\b/);
  });

  it.skipIf(!hasCompiler())('refuses an untested major version unless told otherwise', () => {
    const dir = path.join(scratch, 'major');
    fakeCusparseLt(dir, [1, 0, 0], true);
    expect(probeWith({ NMSPARSE_CUDA_LIBS: dir }).cusparselt.error).toMatch(/new major version/);
    expect(probeWith({ NMSPARSE_CUDA_LIBS: dir, NMSPARSE_ALLOW_CUSPARSELT_MAJOR: '1' }).cusparselt.loaded).toBe(true);
  });
});
