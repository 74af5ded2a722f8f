// The CLI and consumer-type tests run dist/, what a user runs: rebuild it first when a lib/ source is newer.
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');

function stale(): string | null {
  for (const f of readdirSync(path.join(root, 'lib'), { recursive: true, encoding: 'utf8' })) {
    if (!f.endsWith('.ts')) continue;
    const built = path.join(root, 'dist', f.replace(/\.ts$/, '.js'));
    let builtAt: number;
    try {
      builtAt = statSync(built).mtimeMs;
    } catch {
      return f;
    }
    if (statSync(path.join(root, 'lib', f)).mtimeMs > builtAt) return f;
  }
  return null;
}

export default function setup(): void {
  const f = stale();
  if (!f) return;
  console.log(`test setup: lib/${f} is newer than dist/: npm run build:ts`);
  execFileSync('npm', ['run', '-s', 'build:ts'], { cwd: root, stdio: 'inherit' });
}
