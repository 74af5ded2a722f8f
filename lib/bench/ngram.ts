/**
 * `nmsparse bench ngram`: the character n-gram baseline (lib/data/ngram.ts, interpolated Witten–Bell) on the Brown
 * split (lib/data/brown.ts), trained on the training documents, in bits per character on validation and test — the
 * number a `nmsparse train --model transformer` run's validation bits per character is compared with.
 * Writes <out>/ngram-brown-o<order>.json and .md (<out>: --out, else ./bench-results) unless --no-write.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../cli/usage.js';
import { makeWritableDir } from '../io/dir.js';
import { brownCorpus } from '../data/brown.js';
import { CharNgram } from '../data/ngram.js';
import { defaultResultsDir } from './machine.js';

export interface NgramBenchResult {
  order: number;
  vocabSize: number;
  characters: { train: number; validation: number; test: number };
  validationBitsPerChar: number;
  testBitsPerChar: number;
}

export function ngramBaseline(order = 5, dir?: string): NgramBenchResult {
  const c = brownCorpus(dir);
  const m = new CharNgram(c.train, { vocabSize: c.vocab.size, order });
  return {
    order, vocabSize: c.vocab.size, characters: { train: c.train.length, validation: c.validation.length, test: c.test.length },
    validationBitsPerChar: m.bitsPerChar(c.validation), testBitsPerChar: m.bitsPerChar(c.test),
  };
}

export async function benchNgram(args: string[]): Promise<void> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args, strict: true, allowPositionals: false, options: { order: { type: 'string' }, out: { type: 'string' }, 'no-write': { type: 'boolean' } } }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]} (see nmsparse bench ngram --help)`);
  }
  const order = values.order === undefined ? 5 : Number(values.order);
  if (!Number.isSafeInteger(order) || order < 1 || order > 7) throw new UsageError(`--order: got ${JSON.stringify(values.order)}, expected an integer in [1, 7]`);
  const r = ngramBaseline(order);
  const line = `character ${order}-gram (interpolated Witten-Bell) on the Brown split, vocabulary ${r.vocabSize}: ` +
    `validation ${r.validationBitsPerChar.toFixed(4)} bits/char, test ${r.testBitsPerChar.toFixed(4)} bits/char ` +
    `(${r.characters.train} training characters)`;
  process.stdout.write(line + '\n');
  if (values['no-write']) return;
  const out = (values.out as string | undefined) ?? defaultResultsDir();
  makeWritableDir(out, '--out');
  const base = path.join(out, `ngram-brown-o${order}`);
  writeFileSync(base + '.json', JSON.stringify({ bench: 'ngram', date: new Date().toISOString(), ...r }, null, 2) + '\n');
  writeFileSync(base + '.md', `# Character ${order}-gram baseline — Brown corpus\n\n${line}.\n`);
  process.stdout.write(`wrote ${base}.json and .md\n`);
}
