/** Serving: the inference model (batched, off the event loop) and its HTTP server. */
export { InferenceModel, type InferenceOptions, type ModelInfo, type LayerInfo } from './model.js';
export { startServer, isLoopback, type ServerOptions, type RunningServer, type ServerStats } from './server.js';
export { Batcher, type BatcherStats } from './batcher.js';
