/** Model files: safetensors read/write, model checkpoints with N:M metadata, nmsparse networks ↔ files. */
export {
  loadSafetensors, loadSafetensorsSync, saveSafetensors, saveSafetensorsSync, readSafetensorsHeader, parseSafetensors,
  serializeSafetensors, MAX_HEADER_BYTES, ST_DTYPE,
  type SafetensorsHeader, type SafetensorsContents, type TensorInfo, type TensorMap, type ReadOptions, type WriteOptions,
} from './safetensors.js';
export {
  saveModel, saveModelSync, loadModel, loadModelSync, buildModelFile, checkArch, checkInput, inferMlpArch, paramName, NM_VALUES, NM_POSITIONS,
  type ArchSpec, type InputTransform, type LayerSpec, type LayerSparsity, type LoadModelOptions, type ModelFile, type SaveModelOptions,
} from './model-file.js';
export { archOf, moduleState, saveModule, type ModuleState } from './module-file.js';
