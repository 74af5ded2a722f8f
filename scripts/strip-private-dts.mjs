// Removes the `#private;` marker tsc writes into the .d.ts of a class with #private fields: a consumer compiling
// with a target below ES2015 (TypeScript's default) gets TS18028 on it, even with our .d.ts otherwise correct.
// The marker only makes the class nominal; the public members are untouched.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
for (const f of readdirSync(dist, { recursive: true, encoding: 'utf8' })) {
  if (!f.endsWith('.d.ts')) continue;
  const file = path.join(dist, f);
  const text = readFileSync(file, 'utf8');
  const out = text.replace(/^[ \t]*#private;\r?\n/gm, '');
  if (out !== text) writeFileSync(file, out);
}
