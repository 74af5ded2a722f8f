/** The training loop, one-call runs, plots and checkpoints. */
export { Trainer, sparseWeights, type TrainerOptions, type EpochRecord, type TrainResult, type SadStat } from './trainer.js';
export { runTraining, RUN_DEFAULTS, type RunConfig, type RunResult } from './run.js';
export { trainingPlot, lineChart, barChart, figure, type Series, type Panel, type LineChartOptions, type BarGroup } from './plot.js';
export { saveCheckpoint, loadCheckpoint, resumePath } from './checkpoint.js';
