export { Optimizer, applyGradTerms } from './optimizer.js';
export { SGD, type SgdOptions } from './sgd.js';
export { AdamW, type AdamwOptions } from './adamw.js';
export { warmupCosine, stepDecay, constant, type LrSchedule } from './schedule.js';
