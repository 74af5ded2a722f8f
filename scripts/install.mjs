// npm install hook. Tiers, in order, each saying what it did:
//   1. a prebuild in prebuilds/<platform>-<arch>/ (or an existing local build) that loads → done, nothing built;
//   2. cmake-js: the full build, with the CUDA kernels when nvcc is found;
//   3. node-gyp with binding.gyp: the CPU-only fallback where CMake is missing or fails.
// Nothing here downloads anything: cmake-js takes its headers from the node-api-headers package.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const say = (msg) => console.log(`nmsparse: ${msg}`);
const fromSource = process.env.npm_config_build_from_source === 'true' || process.env.NMSPARSE_BUILD_FROM_SOURCE === '1';

// Loads the addon in a child process (a bad binary cannot take this process down) and returns its buildInfo().
function probe(file) {
  const r = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(file)}).buildInfo()))`], { stdio: 'pipe' });
  if (r.status !== 0) return null;
  try {
    return JSON.parse(r.stdout.toString());
  } catch {
    return null;
  }
}

function tryPrebuilt() {
  let file;
  try {
    file = require('node-gyp-build').path(root);
  } catch {
    return false;
  }
  const info = probe(file);
  if (!info) {
    say(`found ${path.relative(root, file)} but it does not load here; building from source`);
    return false;
  }
  const { sourceHash } = require('./source-hash.cjs');
  if (info.sourceHash !== sourceHash()) {
    say(`found ${path.relative(root, file)} but it was built from other sources than native/; building from source`);
    return false;
  }
  say(`using ${path.relative(root, file)} (${info.cuda ? 'with' : 'without'} CUDA kernels; no build needed)`);
  return true;
}

function run(cmd, args) {
  say(`running ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  return r.status === 0;
}

function bin(pkg, name) {
  try {
    const dir = path.dirname(require.resolve(`${pkg}/package.json`));
    const rel = require(`${pkg}/package.json`).bin;
    return path.join(dir, typeof rel === 'string' ? rel : rel[name]);
  } catch {
    return null;
  }
}

if (!fromSource && tryPrebuilt()) process.exit(0);

const cmakeJs = bin('cmake-js', 'cmake-js');
if (cmakeJs && run(process.execPath, [cmakeJs, 'compile', '--log-level', 'warn'])) {
  say('built build/Release/nmsparse.node with cmake-js');
  process.exit(0);
}
say('cmake-js build failed or is unavailable; falling back to node-gyp (CPU backend only)');
const nodeGyp = bin('node-gyp', 'node-gyp') ?? path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
if (existsSync(nodeGyp) && run(process.execPath, [nodeGyp, 'rebuild'])) {
  say('built build/Release/nmsparse.node with node-gyp (CPU only)');
  process.exit(0);
}
console.error('nmsparse: could not build the native addon (tried prebuilds, cmake-js and node-gyp); see the output above');
process.exit(1);
