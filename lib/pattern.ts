/** N:M patterns: `{n: 2, m: 4}` or the string `'2:4'`. Any 1 <= N < M with M in {4, 8, 16, 32}. */
import { fail } from './errors.js';

export interface Pattern {
  n: number;
  m: number;
}

export const SUPPORTED_M: readonly number[] = [4, 8, 16, 32];

export function parsePattern(p: unknown, arg = 'pattern'): Pattern {
  let n: unknown, m: unknown;
  if (typeof p === 'string') {
    const match = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(p);
    if (!match) fail('E_PATTERN', arg, p, "an N:M pattern such as '2:4'");
    n = Number(match[1]);
    m = Number(match[2]);
  } else if (p && typeof p === 'object') {
    ({ n, m } = p as { n: unknown; m: unknown });
  } else {
    fail('E_PATTERN', arg, p, "an N:M pattern such as '2:4' or {n: 2, m: 4}");
  }
  if (typeof m !== 'number' || !SUPPORTED_M.includes(m)) fail('E_PATTERN', `${arg}.m`, m, 'one of 4, 8, 16, 32');
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n >= m) fail('E_PATTERN', `${arg}.n`, n, `an integer with 1 <= n < m = ${m}`);
  return { n, m };
}

export const patternString = (p: Pattern): string => `${p.n}:${p.m}`;
