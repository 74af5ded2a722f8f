// The NMSPARSE_* environment variables are listed in one place (lib/env.ts), and docs/design.md and the README
// list the same: a variable read anywhere in lib/, native/ or scripts/ and missing there fails here.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENVIRONMENT } from '../lib/env.js';

const root = path.join(import.meta.dirname, '..');
const sources = ['lib', 'native', 'scripts'].flatMap((d) =>
  readdirSync(path.join(root, d), { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ts|mjs|cjs|cc|cu|h|cuh)$/.test(f))
    .map((f) => readFileSync(path.join(root, d, f), 'utf8')));
// process.env.X in JavaScript; getenv("X"), env("X"), env_on("X", ...) in C++
const READ = /process\.env\.(NMSPARSE_\w+)|(?:getenv|env|env_on)\("(NMSPARSE_\w+)"/g;
const read = new Set(sources.flatMap((s) => [...s.matchAll(READ)].map((m) => m[1] ?? m[2])));
const tableOf = (file: string): string[] =>
  [...readFileSync(path.join(root, file), 'utf8').matchAll(/^\| `(NMSPARSE_\w+)` \|/gm)].map((m) => m[1]).sort();

describe('environment variables', () => {
  const listed = Object.keys(ENVIRONMENT).sort();
  it('lib/env.ts lists exactly the variables the sources read', () => {
    expect(listed).toEqual([...read].sort());
  });
  it('docs/design.md and the README list the same variables', () => {
    expect(tableOf('docs/design.md')).toEqual(listed);
    expect(tableOf('README.md')).toEqual(listed);
  });
});
