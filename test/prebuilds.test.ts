// Committed prebuilds must have been built from the current native/ sources and package version: a stale
// binary would otherwise be installed (tier 1 of scripts/install.mjs) and run code that is no longer in the tree.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { native, addonPath } from '../lib/native.js';

const require = createRequire(import.meta.url);
const root = path.join(import.meta.dirname, '..');
const { sourceHash } = require('../scripts/source-hash.cjs') as { sourceHash: () => string };
const version = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version as string;

const prebuilds = existsSync(path.join(root, 'prebuilds'))
  ? readdirSync(path.join(root, 'prebuilds'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.node'))
      .map((f) => path.join(root, 'prebuilds', f))
  : [];

describe('build provenance', () => {
  it('the loaded addon carries the package version and was built from the current native/ (else: npm run build:native)', () => {
    const info = native.buildInfo();
    expect(info.version).toBe(version);
    if (!process.env.NMSPARSE_ADDON) expect(info.sourceHash, `stale addon ${addonPath}: run npm run build:native`).toBe(sourceHash());
  });

  // In a child process: this one has its addon loaded already, and a prebuild may be for another build.
  const buildInfo = (file: string): { version: string; sourceHash: string; cuda: boolean } =>
    JSON.parse(execFileSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(file)}).buildInfo()))`]).toString());

  for (const file of prebuilds) {
    it(`${path.relative(root, file)} matches the sources (rebuild with npm run prebuild)`, () => {
      const info = buildInfo(file);
      expect(info.version).toBe(version);
      expect(info.sourceHash).toBe(sourceHash());
    });

    // A rebuild on a host without nvcc succeeds, CPU-only: it must not be what ships.
    it(`${path.relative(root, file)} contains the CUDA kernels (rebuild on a host with nvcc)`, () => {
      expect(buildInfo(file).cuda).toBe(true);
    });
  }
});
