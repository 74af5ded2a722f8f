#!/usr/bin/env node
/**
 * The `nmsparse` command. Each subcommand lives in its own module, imported only when it runs, so
 * `nmsparse info` stays fast and a broken optional part cannot break the others.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../native.js';

const USAGE = `Usage: nmsparse <command> [options]

Commands:
  info [--json] [--require-gpu]
                       what this machine can run: CPU kernels, CUDA device, cuSPARSELt / cuBLASLt found (and why not);
                       --require-gpu exits 1 when the GPU is unusable
  train [options]      train an N:M sparse network on the shipped MNIST digits (nmsparse train --help)
  compare [options]    train several recipes × patterns × seeds and write one report (nmsparse compare --help)
  serve --model FILE   serve a model file over HTTP on 127.0.0.1 (nmsparse serve --help)
  bench [cpu|gpu|serve|train]   run a benchmark and write its results under bench/results/
  version              print the package version

Example:
  npx nmsparse train --model mlp --recipe srste --pattern 2:4 --epochs 3 --out runs/srste`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'info': {
      const { infoCommand } = await import('./info.js');
      process.exitCode = infoCommand(rest);
      return;
    }
    case 'train': {
      const { trainCommand } = await import('./train.js');
      await trainCommand(rest);
      return;
    }
    case 'compare': {
      const { compareCommand } = await import('./compare.js');
      await compareCommand(rest);
      return;
    }
    case 'serve': {
      const { serveCommand } = await import('./serve.js');
      await serveCommand(rest);
      return;
    }
    case 'bench': {
      const { runBench } = await import('../bench/index.js');
      await runBench(rest);
      return;
    }
    case 'version':
    case '--version':
    case '-v':
      console.log(JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')).version);
      return;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      console.error(`nmsparse: unknown command '${command}'\n\n${USAGE}`);
      process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((e) => {
  const err = e as { code?: string; message?: string };
  console.error(`nmsparse: ${err.code ? err.code + ': ' : ''}${err.message ?? String(e)}`);
  process.exitCode = 1;
});
