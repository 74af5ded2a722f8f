/** The training loop, one-call runs, plots and checkpoints. */
export { Trainer, sparseWeights, type TrainerOptions, type EpochRecord, type TrainResult, type SadStat, type BatchSource } from './trainer.js';
export { runTraining, RUN_DEFAULTS, LM_DEFAULTS, type RunConfig, type RunResult, type LmShape } from './run.js';
export { generate, loadLanguageModel, type LanguageModel, type GenerateOptions } from './generate.js';
export { trainingPlot, lmTrainingPlot, lineChart, barChart, figure, type Series, type Panel, type LineChartOptions, type BarGroup } from './plot.js';
export { saveCheckpoint, loadCheckpoint, resumePath } from './checkpoint.js';
