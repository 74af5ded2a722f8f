/**
 * `nmsparse generate`: prints text sampled from a checkpoint of `nmsparse train --model transformer`
 * (lib/train/generate.ts). Bad flags: one line naming the flag, exit code 2; an unreadable checkpoint: exit code 1.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { native } from '../native.js';
import { generate, loadLanguageModel } from '../train/generate.js';
import { UsageError, parseFlags } from './usage.js';
import { guarded, int, num, type CliIO } from './train.js';

const HELP = `Usage: nmsparse generate --model FILE|DIR --prompt TEXT [--tokens 200] [--seed 0] [--temperature 0.8] [--top-k K]
Samples text from a character language model trained by nmsparse train --model transformer (its
checkpoint.safetensors, or the --out DIR holding it) and prints the prompt followed by the sampled characters.
  --tokens N          characters to sample (default 200)
  --seed S            the same seed gives the same text (default 0)
  --temperature X     > 0; lower is more conservative (default 0.8)
  --top-k K           sample among the K most likely characters only (default: all)
  --threads N         CPU threads (default: all cores)`;

const defaultIO = (): CliIO => ({ stdout: process.stdout, stderr: process.stderr, setExitCode: true });

export async function generateCommand(argv: string[], io: CliIO = defaultIO()): Promise<number> {
  return guarded('generate', io, async () => {
    const v = parseFlags(argv, {
      model: { type: 'string' }, prompt: { type: 'string' }, tokens: { type: 'string' }, seed: { type: 'string' },
      temperature: { type: 'string' }, 'top-k': { type: 'string' }, threads: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    });
    if (v.help) {
      io.stdout.write(HELP + '\n');
      return;
    }
    if (v.model === undefined || v.model === '') throw new UsageError('--model: expected a checkpoint file of nmsparse train --model transformer (see --help)');
    const threads = int(v.threads, 'threads');
    const opts = {
      tokens: int(v.tokens, 'tokens') ?? 200,
      seed: int(v.seed, 'seed', 0) ?? 0,
      temperature: num(v.temperature, 'temperature', (x) => x > 0, 'a number > 0') ?? 0.8,
      topK: int(v['top-k'], 'top-k'),
    };
    if (threads) native.setNumThreads(threads);
    const file = existsSync(v.model) && statSync(v.model).isDirectory() ? path.join(v.model, 'checkpoint.safetensors') : v.model;
    io.stdout.write(generate(loadLanguageModel(file), v.prompt ?? '', opts) + '\n');
  });
}
