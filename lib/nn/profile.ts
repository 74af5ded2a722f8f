/**
 * Where a training step spends its time, for `nmsparse bench train`: while a record is installed, the products of
 * lib/nn/linalg.ts and the recipes' passes add their milliseconds to it by phase. Off (one null check) otherwise.
 */
export type StepPhase = 'forward' | 'inputGrad' | 'weightGrad' | 'mask' | 'recipe';

let sink: Partial<Record<StepPhase, number>> | null = null;

/** Installs `record` (phase → ms, accumulated) or, with null, stops recording. */
export function recordPhases(record: Partial<Record<StepPhase, number>> | null): void {
  sink = record;
}

/** Runs f, adding its time to `phase` when a record is installed. */
export function timed<T>(phase: StepPhase, f: () => T): T {
  if (sink === null) return f();
  const t0 = performance.now();
  try {
    return f();
  } finally {
    sink[phase] = (sink[phase] ?? 0) + performance.now() - t0;
  }
}
