#!/usr/bin/env node
/**
 * The `nmsparse` command. Each subcommand lives in its own module, imported only when it runs, so
 * `nmsparse info` stays fast and a broken optional part cannot break the others. Every command takes --help;
 * exit codes: 0 done, 1 the run failed, 2 a bad command line (lib/cli/usage.ts).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../native.js';
import { UsageError, failure, parseFlags } from './usage.js';

const USAGE = `Usage: nmsparse <command> [options]

Commands:
  info [--json] [--require-gpu]
                       what this machine can run: CPU kernels, CUDA device, cuSPARSELt / cuBLASLt found (and why not);
                       --require-gpu exits 1 when the GPU is unusable
  train [options]      train an N:M sparse network on the shipped MNIST digits, or a character GPT on the Brown
                       corpus with --model transformer (nmsparse train --help)
  generate --model FILE --prompt TEXT   sample text from a trained transformer (nmsparse generate --help)
  compare [options]    train several recipes × patterns × seeds and write one report (nmsparse compare --help)
  serve --model FILE   serve a model file over HTTP on 127.0.0.1 (nmsparse serve --help)
  bench <cpu|gpu|serve|train|ngram>   run a benchmark and write its results under ./bench-results/ (nmsparse bench --help)
  version              print the package version

Exit codes: 0 done, 1 the run failed, 2 a bad command line.

Examples:
  npx nmsparse train --model mlp --recipe srste --pattern 2:4 --epochs 3 --out runs/srste
  npx nmsparse train --model transformer --recipe srste --pattern 2:4 --out runs/gpt
  npx nmsparse generate --model runs/gpt/checkpoint.safetensors --prompt "The jury" --tokens 200 --seed 1`;

/** A command without flags: --help prints its usage, anything else is a usage error. */
function noFlags(argv: string[], usage: string): boolean {
  if (parseFlags(argv, { help: { type: 'boolean', short: 'h' } }).help) {
    console.log(usage);
    return false;
  }
  return true;
}

async function main(command: string | undefined, rest: string[]): Promise<void> {
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
    case 'generate': {
      const { generateCommand } = await import('./generate.js');
      await generateCommand(rest);
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
      if (!noFlags(rest, 'Usage: nmsparse version\nPrints the package version.')) return;
      console.log(JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')).version);
      return;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      throw new UsageError(`unknown command '${command}'\n\n${USAGE}`);
  }
}

const [command, ...rest] = process.argv.slice(2);
main(command, rest).catch((e) => {
  const known = ['info', 'train', 'generate', 'compare', 'serve', 'bench', 'version'].includes(command);
  const f = failure(!known ? '' : command === 'bench' && rest[0] && !rest[0].startsWith('-') ? `bench ${rest[0]}` : command, e);
  process.stderr.write(f.line);
  process.exitCode = f.exitCode;
});
