/**
 * backendInfo(): what this process can run on, for `nmsparse info` and bug reports. The CPU side (threads, the
 * ISA the kernels use) and the CUDA side: whether the addon was built with it, whether it is usable here and, when
 * not, exactly why (no driver, no device, sm < 80, cuSPARSELt not found or too old), with the device and the
 * library versions and paths found. Calling it probes the driver once (no GPU work).
 */
import { native } from './native.js';
import { NOT_BUILT, cudaBuilt, cudaProbe, type CudaProbe } from './cuda.js';

export interface LibraryInfo {
  version?: string;
  path?: string;
  /** Why the library is not loaded. */
  error?: string;
  /** Loaded, but a version nmsparse was not checked against (cuSPARSELt newer than 0.8). */
  note?: string;
}

export interface BackendInfo {
  cpu: { threads: number; isa: string };
  cuda: {
    built: boolean;
    usable: boolean;
    /** Why the GPU path is unusable; null when it is usable. */
    reason: string | null;
    runtime?: string;
    device?: { name: string; sm: string; memoryBytes: number; driver: string | null; smCount: number };
    cusparselt?: LibraryInfo;
    cublaslt?: LibraryInfo;
    /** Usable, but sparse products run dense (cuBLASLt on the pruned weight), and why: cuSPARSELt did not load. */
    sparseReason?: string;
  };
}

const lib = (l: CudaProbe['cusparselt']): LibraryInfo =>
  l.loaded
    ? { version: l.version, path: l.path, ...(l.note ? { note: l.note } : {}) }
    : { ...(l.version ? { version: l.version } : {}), ...(l.path ? { path: l.path } : {}), error: l.error };

export function backendInfo(): BackendInfo {
  const cpu = { threads: native.numThreads() as number, isa: (native.cpuIsa() as { active: string }).active };
  const p = cudaProbe();
  if (!cudaBuilt || !p)
    return { cpu, cuda: { built: false, usable: false, reason: NOT_BUILT } };
  return {
    cpu,
    cuda: {
      built: true,
      usable: p.usable,
      reason: p.usable ? null : p.reason,
      runtime: p.runtimeVersion,
      ...(p.device
        ? { device: { name: p.device.name, sm: p.device.sm, memoryBytes: p.device.memoryBytes, driver: p.device.driver, smCount: p.device.smCount } }
        : {}),
      cusparselt: lib(p.cusparselt),
      cublaslt: lib(p.cublaslt),
      ...(p.usable && p.sparseReason ? { sparseReason: p.sparseReason } : {}),
    },
  };
}

/** A few human-readable lines of backendInfo() (what `nmsparse info` prints). */
export function formatBackendInfo(info: BackendInfo = backendInfo()): string {
  const lines = [`cpu: ${info.cpu.threads} threads, ${info.cpu.isa} kernels`];
  const c = info.cuda;
  if (!c.built) {
    lines.push(`cuda: not built (${c.reason})`);
    return lines.join('\n');
  }
  lines.push(`cuda: ${c.usable ? 'usable' : `unusable: ${c.reason}`} (runtime ${c.runtime})`);
  if (c.device) {
    const gib = (c.device.memoryBytes / 2 ** 30).toFixed(1);
    lines.push(`  device: ${c.device.name}, sm ${c.device.sm}, ${c.device.smCount} SMs, ${gib} GiB, driver ${c.device.driver ?? '?'}`);
  }
  const libLine = (name: string, l?: LibraryInfo) =>
    l && (l.error ? `  ${name}: ${l.error}` : `  ${name}: ${l.version} at ${l.path}${l.note ? ` (${l.note})` : ''}`);
  for (const l of [libLine('cuSPARSELt', c.cusparselt), libLine('cuBLASLt', c.cublaslt)]) if (l) lines.push(l);
  if (c.sparseReason) lines.push(`  sparse products run dense: ${c.sparseReason}`);
  return lines.join('\n');
}
