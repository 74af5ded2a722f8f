/**
 * Loads the native addon (node-gyp-build: a local build in build/Release wins, then prebuilds/) and wraps every
 * function so that native errors, which carry a `code`, surface as NmSparseError. Importing this touches no GPU.
 * NMSPARSE_ADDON=/path/to/nmsparse.node loads that file instead (to test a build from another directory).
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NmSparseError, type ErrorCode } from './errors.js';

const require = createRequire(import.meta.url);

/** The package root: the nearest directory above this file that holds package.json. */
export const packageRoot: string = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('nmsparse: package.json not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
})();

function resolveAddon(): string {
  if (process.env.NMSPARSE_ADDON) return path.resolve(process.env.NMSPARSE_ADDON);
  return require('node-gyp-build').path(packageRoot) as string;
}

/** Path of the loaded .node file. */
export const addonPath: string = resolveAddon();

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type NativeFn = (...args: any[]) => any;

function convert(e: unknown): unknown {
  const err = e as { code?: unknown; message?: string };
  if (err && typeof err.code === 'string' && err.code.startsWith('E_') && !(e instanceof NmSparseError))
    return new NmSparseError(err.code as ErrorCode, err.message ?? String(e), { cause: e });
  return e;
}

function wrap(fn: NativeFn): NativeFn {
  return (...args) => {
    let r;
    try {
      r = fn(...args);
    } catch (e) {
      throw convert(e);
    }
    return r instanceof Promise ? r.catch((e) => Promise.reject(convert(e))) : r;
  };
}

const raw = require(addonPath) as Record<string, unknown>;
const wrapped: Record<string, unknown> = {};
for (const [k, v] of Object.entries(raw)) wrapped[k] = typeof v === 'function' && !/^[A-Z]/.test(k) ? wrap(v as NativeFn) : v;

/** The addon's functions (see native/napi/*.cc for each signature). Classes (capitalised names) are not wrapped. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const native: Record<string, any> = wrapped;
export { convert as convertNativeError };
