// The addon contract (lib/native.ts): the loaded addon exports exactly the declared functions, and the enum codes
// lib/ sends (dtype, activation) are the ones native/core defines.
import { describe, expect, it } from 'vitest';
import { native, addonNames } from '../lib/native.js';
import { DTYPES } from '../lib/dtype.js';
import { ACTIVATIONS } from '../lib/gemm.js';

describe('addon contract', () => {
  it('exports exactly the functions lib/native.ts declares (the CUDA ones in a CUDA build)', () => {
    const expected = [...addonNames.cpu, ...(native.buildInfo().cuda ? addonNames.cuda : [])].sort();
    expect(Object.keys(native).sort()).toEqual(expected);
  });

  it('shares the dtype and activation codes with native/core', () => {
    const t = native.enumTables();
    expect(t.dtype).toEqual(DTYPES);
    expect(t.activation).toEqual(ACTIVATIONS);
  });
});
