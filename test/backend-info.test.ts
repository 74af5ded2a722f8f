// backendInfo() and the 'cuda' device on a machine without a usable GPU (CI, laptops): the reason is reported
// exactly, moving a tensor to 'cuda' fails with E_DEVICE carrying that reason, and the library loader looks where
// DESIGN §3 says, in that order, with a clear message for each way a library can be unusable. The loader cases run
// the addon in child processes with a controlled environment and fake libraries (built with the system C
// compiler, skipped when there is none). Nothing here needs a GPU; test/gpu/ covers the GPU itself.
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NmSparseError, randn, nm } from '../lib/index.js';
import { addonPath, packageRoot } from '../lib/native.js';
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
  cusparselt: { loaded: boolean; path?: string; version?: string; error?: string; note?: string };
  cublaslt: { loaded: boolean; path?: string; version?: string; error?: string };
  sparseReason?: string;
};

/** addon.<fn>() in a fresh process whose environment is exactly `env` (plus PATH and HOME unless given). */
function addonCallWith<T>(fn: string, env: Record<string, string>): T {
  const script = `process.stdout.write(JSON.stringify(require(${JSON.stringify(addonPath)}).${fn}()))`;
  const r = spawnSync(process.execPath, ['-e', script], {
    env: { PATH: process.env.PATH ?? '', HOME: path.join(scratch, 'home'), ...env },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** cudaInfo() of the addon in a fresh process whose environment is exactly `env` (plus PATH and HOME). */
const probeWith = (env: Record<string, string>): Probe => addonCallWith<Probe>('cudaInfo', env);

function hasProgram(name: string): boolean {
  try {
    execFileSync(name, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const hasCompiler = (): boolean => hasProgram('cc');
const hasCmake = (): boolean => hasProgram('cmake');

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

describe.skipIf(!cudaBuilt)('library search (DESIGN §3)', () => {
  it('reports where it looked when cuSPARSELt is nowhere', () => {
    const p = probeWith({ NMSPARSE_CUDA_LIBS: path.join(scratch, 'empty') });
    if (p.cusparselt.loaded) return;  // a system-wide install (ld.so.conf) answers first: nothing to assert
    expect(p.cusparselt.error).toMatch(/libcusparseLt\.so\.0\) not found in .*the loader path/);
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

describe.skipIf(!cudaBuilt)('library search order (issue 9: where users install the wheels)', () => {
  // One fake Python prefix per place a wheel can live, each with the cuSPARSELt and cuBLASLt wheel directories.
  const prefix = (name: string, python = '3.12') => {
    const p = path.join(scratch, 'order', name);
    for (const sub of ['cusparselt', 'cu13'])
      mkdirSync(path.join(p, 'lib', `python${python}`, 'site-packages', 'nvidia', sub, 'lib'), { recursive: true });
    return p;
  };
  const site = (p: string, python = '3.12') => path.join(p, 'lib', `python${python}`, 'site-packages');
  const venv = prefix('venv'), conda = prefix('conda'), onPath = prefix('onpath', '3.11'), pyPath = prefix('pythonpath');
  mkdirSync(path.join(onPath, 'bin'), { recursive: true });
  writeFileSync(path.join(onPath, 'bin', 'python3'), '#!/bin/sh\n', { mode: 0o755 });
  const env = {
    VIRTUAL_ENV: venv, CONDA_PREFIX: conda, PYTHONPATH: site(pyPath),
    PATH: `${path.join(onPath, 'bin')}:${process.env.PATH ?? ''}`,
  };

  it('tries $VIRTUAL_ENV, $CONDA_PREFIX, the python3 on PATH, the apt directory, then the loader path and the rest', () => {
    const order = addonCallWith<{ cusparselt: string[]; cublaslt: string[] }>('cudaLibrarySearch', env);
    const at = (dir: string) => order.cusparselt.indexOf(dir);
    const wanted = [
      path.join(site(venv), 'nvidia', 'cusparselt', 'lib'),
      path.join(site(venv), 'nvidia', 'cu13', 'lib'),
      path.join(site(conda), 'nvidia', 'cusparselt', 'lib'),
      path.join(site(onPath, '3.11'), 'nvidia', 'cusparselt', 'lib'),
      ...(existsSync('/usr/lib/x86_64-linux-gnu') ? ['/usr/lib/x86_64-linux-gnu'] : []),
      '(loader path)',
      path.join(site(pyPath), 'nvidia', 'cusparselt', 'lib'),
    ];
    for (const w of wanted) expect(order.cusparselt).toContain(w);
    const positions = wanted.map(at);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    // /opt/*/.venv and /opt/*/venv come after $CONDA_PREFIX and before the python3 on PATH, where this machine has any.
    for (const d of order.cusparselt.filter((x) => /^\/opt\/[^/]+\/\.?venv\//.test(x))) {
      expect(at(d)).toBeGreaterThan(at(path.join(site(conda), 'nvidia', 'cusparselt', 'lib')));
      expect(at(d)).toBeLessThan(at(path.join(site(onPath, '3.11'), 'nvidia', 'cusparselt', 'lib')));
    }
    // cuBLASLt is looked for in the same places, in its own wheel directories.
    expect(order.cublaslt.indexOf(path.join(site(venv), 'nvidia', 'cu13', 'lib'))).toBeLessThan(order.cublaslt.indexOf('(loader path)'));
    expect(order.cublaslt).not.toContain(path.join(site(venv), 'nvidia', 'cusparselt', 'lib'));
  });

  it.skipIf(!hasCompiler())('finds cuSPARSELt in the active virtual environment, before the python3 on PATH', () => {
    fakeCusparseLt(path.join(site(onPath, '3.11'), 'nvidia', 'cusparselt', 'lib'), [0, 7, 0], true);
    expect(probeWith({ PATH: env.PATH }).cusparselt.path).toBe(path.join(site(onPath, '3.11'), 'nvidia', 'cusparselt', 'lib', 'libcusparseLt.so.0'));
    fakeCusparseLt(path.join(site(venv), 'nvidia', 'cusparselt', 'lib'), [0, 8, 1], true);
    const p = probeWith(env);
    expect(p.cusparselt.path).toBe(path.join(site(venv), 'nvidia', 'cusparselt', 'lib', 'libcusparseLt.so.0'));
    expect(p.cusparselt.loaded).toBe(true);
    expect(p.cusparselt.note).toBeUndefined();  // 0.8.1 is a version nmsparse was checked against
  });

  it.skipIf(!hasCompiler())('loads a newer 0.x cuSPARSELt and says it is unverified', () => {
    const dir = path.join(scratch, 'newer');
    fakeCusparseLt(dir, [0, 10, 0], true);
    const p = probeWith({ NMSPARSE_CUDA_LIBS: dir });
    expect(p.cusparselt.loaded).toBe(true);
    expect(p.cusparselt.note).toMatch(/0\.10\.0 is newer than the versions nmsparse was checked against \(0\.6 - 0\.8\)/);
  });

  it.skipIf(!hasCmake())('the build looks for the wheel headers in the same places (scripts/wheel-headers.cmake)', () => {
    const inc = path.join(site(venv), 'nvidia', 'cusparselt', 'include');
    const onPathInc = path.join(site(onPath, '3.11'), 'nvidia', 'cu13', 'include');
    mkdirSync(inc, { recursive: true });
    mkdirSync(onPathInc, { recursive: true });
    const r = spawnSync('cmake', ['-P', path.join(packageRoot, 'scripts', 'wheel-headers.cmake')], {
      env: { PATH: env.PATH, VIRTUAL_ENV: venv }, encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    const dirs = r.stderr.trim().split('\n');  // message() writes to stderr
    expect(dirs).toContain(inc);
    expect(dirs.indexOf(inc)).toBeLessThan(dirs.indexOf(onPathInc));
  });
});
