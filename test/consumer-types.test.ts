// Our .d.ts as a user's compiler meets them: a file importing 'nmsparse' (dist/, through a node_modules symlink)
// compiled with --strict, the default target and declaration emit, under each common module setting. Errors
// here are ones every user of that setting would see in our types, or TS2742 when they re-export our values.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..');

// Re-exports with inferred types (TS2742 unless every named type is reachable from the package entry), and a use
// of each part of the API so that their declarations are checked.
const CONSUMER = `
import * as ns from 'nmsparse';
import { nm, randn, nn, optim, recipes, train, io, InferenceModel, startServer, type Tensor } from 'nmsparse';

export const mask = nm.mask;
export const linear = nm.linear;
export const { compress, check, sad, transposableMask } = nm;
export const everything = ns;
export const modules = { nn, optim, recipes, train, io };
export const serve = { InferenceModel, startServer };
export const layer = new nn.SparseLinear(8, 4, '2:4', recipes.createRecipe('srste'));
export const opt = new optim.SGD(layer.parameters(), { lr: 0.1 });
export const run = (o: train.RunConfig) => train.runTraining(o);
export const info = async (file: string) => (await InferenceModel.load(file)).info();
export const w: Tensor = randn([4, 8], { seed: 1 });
export const ok: boolean = nm.check(nm.prune(w, '2:4'), '2:4').ok;
`;

// A CommonJS file: require(esm) needs Node >= 20.19 at run time and TypeScript's module nodenext (or node20) to compile.
const CJS_CONSUMER = `
import { nm, randn } from 'nmsparse';
export const ok: boolean = nm.check(nm.prune(randn([4, 8], { seed: 1 }), '2:4'), '2:4').ok;
`;

const SETTINGS: Record<string, ts.CompilerOptions> = {
  commonjs: { module: ts.ModuleKind.CommonJS },
  node16: { module: ts.ModuleKind.Node16 },
  nodenext: { module: ts.ModuleKind.NodeNext },
  bundler: { module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler },
};

let dir: string;
// Parsed files shared between the four programs (keyed by the parse options, which differ between module kinds).
const parsed = new Map<string, ts.SourceFile | undefined>();
const host = ts.createCompilerHost({});
const getSourceFile = host.getSourceFile.bind(host);
host.getSourceFile = (file, language, ...rest) => {
  const key = `${file}\0${JSON.stringify(language)}`;
  if (!parsed.has(key)) parsed.set(key, getSourceFile(file, language, ...rest));
  return parsed.get(key);
};
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'nmsparse-consumer-'));
  writeFileSync(path.join(dir, 'package.json'), '{"name":"consumer","private":true,"type":"module"}\n');
  writeFileSync(path.join(dir, 'consumer.ts'), CONSUMER);
  writeFileSync(path.join(dir, 'consumer.cts'), CJS_CONSUMER);
  mkdirSync(path.join(dir, 'node_modules', '@types'), { recursive: true });
  symlinkSync(root, path.join(dir, 'node_modules', 'nmsparse'), 'dir');
  // What a Node.js project has: our declarations name Buffer and node:http.
  symlinkSync(path.join(root, 'node_modules', '@types', 'node'), path.join(dir, 'node_modules', '@types', 'node'), 'dir');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a consumer compiles against dist/*.d.ts with --strict and the default target', () => {
  for (const [name, settings] of Object.entries(SETTINGS))
    it(`module ${name}, declaration: true`, () => {
      const options: ts.CompilerOptions = {
        ...settings, strict: true, declaration: true, emitDeclarationOnly: true, outDir: path.join(dir, `out-${name}`),
      };
      const roots = ['consumer.ts', ...(name === 'nodenext' ? ['consumer.cts'] : [])].map((f) => path.join(dir, f));
      const program = ts.createProgram(roots, options, host);
      // Our files only: checking all of @types/node four times would take most of a minute on a small machine.
      const ours = program.getSourceFiles().filter((f) => f.fileName.startsWith(path.join(root, 'dist')) || roots.includes(f.fileName));
      const diagnostics = [
        ...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics(),
        ...ours.flatMap((f) => [...program.getSyntacticDiagnostics(f), ...program.getSemanticDiagnostics(f)]),
        ...roots.flatMap((r) => program.emit(program.getSourceFile(r)).diagnostics),
      ];
      const text = ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => dir, getNewLine: () => '\n' });
      expect(text).toBe('');
      // The types came from dist/ (not a stub that resolved instead).
      expect(program.getSourceFiles().some((f) => f.fileName.endsWith('/dist/index.d.ts'))).toBe(true);
    });
});

it("require('nmsparse') works from CommonJS (require(esm), Node >= 20.19 as engines says)", () => {
  writeFileSync(path.join(dir, 'consumer.cjs'), "const { nm, randn } = require('nmsparse');\nprocess.stdout.write(String(nm.check(nm.prune(randn([4, 8], { seed: 1 }), '2:4'), '2:4').ok));\n");
  expect(execFileSync(process.execPath, [path.join(dir, 'consumer.cjs')], { cwd: dir, encoding: 'utf8' })).toBe('true');
});
