/**
 * Where a training step spends its time, for `nmsparse bench train`: while a record is installed, the products of
 * lib/nn/linalg.ts and the recipes' passes add their milliseconds to it by phase. Off (one null check) otherwise.
 * GPU work is asynchronous: with a `sync` (the device's synchronize) each phase waits for the GPU before and after,
 * so it is timed as GPU time.
 */
export type StepPhase = 'forward' | 'inputGrad' | 'weightGrad' | 'mask' | 'recipe';

let sink: Partial<Record<StepPhase, number>> | null = null;
let wait: (() => void) | null = null;

/** Installs `record` (phase → ms, accumulated) or, with null, stops recording. */
export function recordPhases(record: Partial<Record<StepPhase, number>> | null, sync: (() => void) | null = null): void {
  sink = record;
  wait = record ? sync : null;
}

/** Runs f, adding its time to `phase` when a record is installed. */
export function timed<T>(phase: StepPhase, f: () => T): T {
  if (sink === null) return f();
  const record = sink;
  wait?.();
  const t0 = performance.now();
  try {
    return f();
  } finally {
    wait?.();
    record[phase] = (record[phase] ?? 0) + performance.now() - t0;
  }
}
