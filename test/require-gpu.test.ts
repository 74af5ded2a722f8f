// NMSPARSE_REQUIRE_GPU=1 and `nmsparse info --require-gpu` on a machine without a usable GPU (CI, laptops): the GPU
// suites fail with backendInfo()'s reason instead of skipping, and the info command exits 1. Where the GPU is
// usable there is nothing to fail, so this file skips; test/gpu/ runs for real there.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { backendInfo } from '../lib/backend-info.js';
import { packageRoot } from '../lib/native.js';
import { infoCommand } from '../lib/cli/info.js';
import { runBench } from '../lib/bench/index.js';

const info = backendInfo();

/** `vitest run <file>` in a child process, with this run's own vitest variables removed from its environment. */
function vitestRun(file: string, extra: Record<string, string>): { status: number | null; output: string } {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('VITEST') && k !== 'NMSPARSE_REQUIRE_GPU') env[k] = v;
  const r = spawnSync(process.execPath, [path.join(packageRoot, 'node_modules', 'vitest', 'vitest.mjs'), 'run', file], {
    cwd: packageRoot, env: { ...env, ...extra, NO_COLOR: '1' }, encoding: 'utf8', timeout: 120_000,
  });
  return { status: r.status, output: `${r.stdout}\n${r.stderr}` };
}

describe.skipIf(info.cuda.usable)('without a usable GPU', () => {
  it('test/gpu fails under NMSPARSE_REQUIRE_GPU=1, naming the reason, and skips without it', () => {
    const loud = vitestRun('test/gpu/errors.test.ts', { NMSPARSE_REQUIRE_GPU: '1' });
    expect(loud.status).not.toBe(0);
    expect(loud.output).toContain(`NMSPARSE_REQUIRE_GPU=1 but the GPU is unusable: ${info.cuda.reason}`);
    const quiet = vitestRun('test/gpu/errors.test.ts', {});
    expect(quiet.status, quiet.output).toBe(0);
    expect(quiet.output).toMatch(/skipped/);
  }, 240_000);  // two child vitest runs on a shared machine

  it('npm run test:gpu sets NMSPARSE_REQUIRE_GPU=1', () => {
    const scripts = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')).scripts as Record<string, string>;
    expect(scripts['test:gpu']).toMatch(/^NMSPARSE_REQUIRE_GPU=1 vitest run test\/gpu$/);
  });

  it('nmsparse info --require-gpu exits 1 with the reason; plain info exits 0', () => {
    const lines: string[] = [];
    const errors: string[] = [];
    const error = console.error;
    console.error = (m: string) => errors.push(m);
    try {
      expect(infoCommand(['--require-gpu'], (l) => lines.push(l))).toBe(1);
    } finally {
      console.error = error;
    }
    expect(errors.join('\n')).toContain(`the GPU is unusable: ${info.cuda.reason}`);
    expect(lines.join('\n')).toContain(info.cuda.reason!);
    expect(infoCommand([], () => {})).toBe(0);
    const json: string[] = [];
    expect(infoCommand(['--json'], (l) => json.push(l))).toBe(0);
    expect(JSON.parse(json.join('\n')).cuda.reason).toBe(info.cuda.reason);
  });

  it('bench gpu checks its arguments first, then refuses with the reason (E_DEVICE)', async () => {
    await expect(runBench(['gpu', '--iters', '0'])).rejects.toMatchObject({ code: 'E_VALUE', message: expect.stringMatching(/--iters got 0/) });
    await expect(runBench(['gpu', '--budget-s', 'soon'])).rejects.toMatchObject({ code: 'E_VALUE', message: expect.stringMatching(/--budget-s/) });
    await expect(runBench(['gpu', '--dtypes', 'float16,fp64'])).rejects.toMatchObject({ code: 'E_VALUE', message: expect.stringMatching(/"fp64"/) });
    await expect(runBench(['gpu', '--quick'])).rejects.toMatchObject({ code: 'E_DEVICE', message: expect.stringContaining(info.cuda.reason!) });
  });
});
