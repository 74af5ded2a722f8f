/**
 * Output directories: made one level at a time and proven writable before any work starts. Node's
 * mkdirSync(dir, {recursive: true}) spins forever on paths under /proc, and a run that trains for an hour
 * before failing to write its first file wastes the hour.
 */
import { closeSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { NmSparseError } from '../errors.js';

/** Creates `dir` (and missing parents) and checks that a file can be created in it; E_IO naming `arg` otherwise. */
export function makeWritableDir(dir: string, arg = 'out'): string {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  const io = (what: string, e: unknown): never => {
    throw new NmSparseError('E_IO', `${arg}: cannot ${what} ${dir}: ${(e as Error).message}`, { cause: e });
  };
  for (let p = abs; ; p = path.dirname(p)) {
    let st;
    try {
      st = statSync(p, { throwIfNoEntry: false });
    } catch (e) {
      io('use', e);
    }
    if (st) {
      if (!st.isDirectory()) io('use', new Error(`${p} is not a directory`));
      break;
    }
    missing.unshift(p);
    if (path.dirname(p) === p) break;
  }
  for (const p of missing) {
    try {
      mkdirSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') io('create', e);
    }
  }
  const probe = path.join(abs, `.nmsparse-write-test-${process.pid}`);
  try {
    closeSync(openSync(probe, 'wx'));
    unlinkSync(probe);
  } catch (e) {
    io('write to', e);
  }
  return abs;
}
