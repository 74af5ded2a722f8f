/**
 * The machine a benchmark ran on, for its results files: CPU model and features, cores,
 * memory, OS, Node, and the versions of the libraries in play. `machineName()` names the result files.
 */
import { cpus, hostname, loadavg, release, totalmem, type as osType } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { native, packageRoot } from '../native.js';

export interface MachineInfo {
  name: string;
  hostname: string;
  cpu: string;
  /** family/model/stepping from /proc/cpuinfo, when readable. */
  cpuId?: string;
  /** The SIMD features that matter to the CPU kernels. */
  cpuFeatures: string[];
  cores: number;
  memoryGiB: number;
  os: string;
  kernel: string;
  node: string;
  napi: string;
  v8: string;
  nmsparse: string;
  /** The CPU kernels' ISA (native cpuIsa()). */
  cpuIsa: { active: string; best: string };
  /** Size of nmsparse's thread pool. */
  threads: number;
  openblas: { available: boolean; path?: string; config?: string; corename?: string; threads?: number; error?: string };
  /** os.loadavg() when the info was taken: other work on the machine skews timings. */
  loadavg: number[];
}

function readText(file: string): string | null {
  try {
    return existsSync(file) ? readFileSync(file, 'utf8') : null;
  } catch {
    return null;
  }
}

function cpuinfo(): { model?: string; id?: string; flags: string[] } {
  const txt = readText('/proc/cpuinfo');
  if (!txt) return { flags: [] };
  const first = txt.split('\n\n')[0];
  const field = (k: string): string | undefined => first.match(new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm'))?.[1]?.trim();
  const fam = field('cpu family'), mod = field('model'), step = field('stepping');
  const flags = (field('flags') ?? '').split(/\s+/);
  const wanted = ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512_bf16', 'avx512_vnni', 'avx512_fp16', 'amx_tile'];
  return {
    model: field('model name'),
    id: fam !== undefined ? `family ${fam}, model ${mod}, stepping ${step}` : undefined,
    flags: wanted.filter((f) => flags.includes(f)),
  };
}

function osName(): string {
  const rel = readText('/etc/os-release');
  const pretty = rel?.match(/^PRETTY_NAME="?([^"\n]*)"?$/m)?.[1];
  return pretty ?? `${osType()} ${release()}`;
}

/** Where results go without --out: ./bench-results in the working directory, never inside the installed package. */
export const defaultResultsDir = (): string => path.resolve('bench-results');

/** A file-name-safe slug of a device name: `NVIDIA H200` → `nvidia-h200`. */
export const slug = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

/** `amd-epyc-2c`: NMSPARSE_MACHINE, or the CPU model and core count as a file-name-safe slug. */
export function machineName(): string {
  if (process.env.NMSPARSE_MACHINE) return process.env.NMSPARSE_MACHINE;
  const model = cpus()[0]?.model ?? 'cpu';
  const slug = model.toLowerCase().replace(/\(r\)|\(tm\)|cpu|processor|@.*$/g, '').replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  return `${slug || 'cpu'}-${cpus().length}c`;
}

export function machineInfo(): MachineInfo {
  const ci = cpuinfo();
  const pkg = JSON.parse(readText(path.join(packageRoot, 'package.json')) ?? '{}') as { version?: string };
  const peer = native.blasPeer() as MachineInfo['openblas'];
  return {
    name: machineName(),
    hostname: hostname(),
    cpu: ci.model ?? cpus()[0]?.model ?? 'unknown',
    cpuId: ci.id,
    cpuFeatures: ci.flags,
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: osName(),
    kernel: `${osType()} ${release()}`,
    node: process.version,
    napi: process.versions.napi ?? '',
    v8: process.versions.v8,
    nmsparse: pkg.version ?? 'unknown',
    cpuIsa: native.cpuIsa() as { active: string; best: string },
    threads: native.numThreads() as number,
    openblas: peer,
    loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
  };
}
