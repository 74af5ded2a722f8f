/**
 * `nmsparse info [--json] [--require-gpu]`: what this machine can run (the addon, CPU kernels, CUDA device,
 * cuSPARSELt / cuBLASLt found, and why not). With --require-gpu the exit status is 1 when the GPU is unusable, so a
 * GPU machine's script stops there instead of running everything on the CPU.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { backendInfo, formatBackendInfo } from '../backend-info.js';
import { native, addonPath } from '../native.js';

export const INFO_USAGE = `Usage: nmsparse info [--json] [--require-gpu]

  --json          print backendInfo() and the addon's build as JSON
  --require-gpu   exit with status 1 when the CUDA backend is unusable (the reason is printed)`;

/** Prints the report; returns the exit status. */
export function infoCommand(args: string[], out: (line: string) => void = console.log): number {
  const { values: o } = parseArgs({
    args,
    options: { json: { type: 'boolean', default: false }, 'require-gpu': { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } },
    allowPositionals: false,
  });
  if (o.help) {
    out(INFO_USAGE);
    return 0;
  }
  const build = native.buildInfo() as { version: string; sourceHash: string };
  const info = backendInfo();
  if (o.json) out(JSON.stringify({ addon: { path: addonPath, ...build }, ...info }, null, 2));
  else {
    out(`nmsparse ${build.version} (${path.relative(process.cwd(), addonPath) || addonPath}, sources ${build.sourceHash})`);
    out(formatBackendInfo(info));
  }
  if (o['require-gpu'] && !info.cuda.usable) {
    console.error(`nmsparse info --require-gpu: the GPU is unusable: ${info.cuda.reason}`);
    return 1;
  }
  return 0;
}
