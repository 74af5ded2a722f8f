/**
 * Learning-rate schedules: functions of (step, total steps) → learning rate, evaluated before each step.
 *   warmupCosine  linear warm-up from 0 to lr over `warmup` steps (a count, or a fraction of the run when < 1),
 *                 then cosine decay to minLr at the last step (SR-STE's official schedule: warm-up + cosine)
 *   stepDecay     lr·gamma^⌊step / stepSize⌋ (stepSize a count, or a fraction of the run when < 1)
 *   constant      lr
 */
import { fail } from '../errors.js';
import { checkLr } from './optimizer.js';

export type LrSchedule = (step: number, total: number) => number;

const steps = (v: number, total: number): number => (v < 1 ? Math.round(v * total) : Math.round(v));

function nonNegative(v: unknown, arg: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail('E_VALUE', arg, v, 'a finite number >= 0');
  return v;
}

export function warmupCosine(opts: { lr: number; warmup?: number; minLr?: number }): LrSchedule {
  const lr = checkLr(opts.lr), min = checkLr(opts.minLr ?? 0, 'minLr'), warm = nonNegative(opts.warmup ?? 0, 'warmup');
  return (step, total) => {
    const w = Math.min(steps(warm, total), total);
    if (step < w) return (lr * (step + 1)) / w;
    const span = Math.max(1, total - w - 1);
    const t = Math.min(1, (step - w) / span);
    return min + 0.5 * (lr - min) * (1 + Math.cos(Math.PI * t));
  };
}

export function stepDecay(opts: { lr: number; stepSize: number; gamma?: number }): LrSchedule {
  const lr = checkLr(opts.lr), size = nonNegative(opts.stepSize, 'stepSize'), gamma = nonNegative(opts.gamma ?? 0.1, 'gamma');
  if (size === 0) fail('E_VALUE', 'stepSize', size, 'a number > 0');
  return (step, total) => lr * gamma ** Math.floor(step / Math.max(1, steps(size, total)));
}

export function constant(opts: { lr: number }): LrSchedule {
  const lr = checkLr(opts.lr);
  return () => lr;
}
