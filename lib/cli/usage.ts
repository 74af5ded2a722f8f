/**
 * The CLI's one grammar for command lines and failures, shared by every command: `--help` prints the command's
 * usage (exit 0); a bad command line is one line naming the flag, exit code 2; a run that fails is one line
 * `nmsparse <command>: CODE: message`, exit code 1. Kept free of heavy imports so that `nmsparse info` stays fast.
 */
import { parseArgs } from 'node:util';
import { NmSparseError } from '../errors.js';

/** A bad command line. An E_VALUE NmSparseError, so that callers of runServe() and the like see the usual type. */
export class UsageError extends NmSparseError {
  constructor(message: string) {
    super('E_VALUE', message);
    this.name = 'UsageError';
  }
}

/** Whether `e` is a usage error: ours, or one of parseArgs' ERR_PARSE_ARGS_* left unconverted. */
export function isUsageError(e: unknown): boolean {
  return e instanceof UsageError || String((e as { code?: unknown } | null)?.code).startsWith('ERR_PARSE_ARGS');
}

/** The line a failure prints on stderr (`command` '' for none) and its exit code: 2 for a usage error, 1 otherwise. */
export function failure(command: string, e: unknown): { line: string; exitCode: 1 | 2 } {
  const usage = isUsageError(e);
  const { code, message } = (e ?? {}) as { code?: unknown; message?: unknown };
  const prefix = !usage && typeof code === 'string' ? `${code}: ` : '';
  return { line: `nmsparse${command ? ' ' + command : ''}: ${prefix}${typeof message === 'string' ? message : String(e)}\n`, exitCode: usage ? 2 : 1 };
}

export type Values = Record<string, string | boolean | undefined>;
/** The parsed values of `options`: a string per string flag, a boolean per boolean flag. */
export type FlagValues<O> = { [K in keyof O]?: O[K] extends { type: 'boolean' } ? boolean : string };

/** parseArgs in strict mode, with its errors turned into UsageErrors that name the flag. */
export function parseFlags<O extends Record<string, { type: 'string' | 'boolean'; short?: string }>>(argv: string[], options: O): FlagValues<O> {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as FlagValues<O>;
  } catch (e) {
    const msg = (e as Error).message;
    const flag = /'(-[^']*)'/.exec(msg)?.[1];
    if (/argument is ambiguous/.test(msg)) throw new UsageError(`${flag}: a value starting with "-" must be written ${flag}=VALUE`);
    if (/Unknown option/.test(msg)) throw new UsageError(`${flag ?? 'option'}: unknown flag (see --help)`);
    if (/argument missing/.test(msg)) throw new UsageError(`${flag?.split(' ')[0] ?? 'option'}: expects a value`);
    if (/Unexpected argument/.test(msg)) throw new UsageError(`${/'([^']*)'/.exec(msg)?.[1] ?? 'argument'}: unexpected argument (flags take the form --name value)`);
    throw new UsageError(msg.split('\n')[0]);
  }
}

/** Whether a command line asks for help (checked before anything else parses it). */
export const wantsHelp = (argv: readonly string[]): boolean => argv.includes('--help') || argv.includes('-h');
