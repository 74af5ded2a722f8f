/** Neural-network modules with explicit forward/backward, the loss, the MNIST models, and the training ops. */
export { Module, Parameter } from './module.js';
export {
  Linear, SparseLinear, Conv2d, SparseConv2d, MaxPool2d, Flatten, Reshape, ReLU, GELU, LayerNorm, Dropout, Sequential,
  type LinearOptions, type Conv2dOptions, type SparsityOptions,
} from './layers.js';
export { SoftmaxCrossEntropy } from './loss.js';
export { autocast, autocastPrecision, currentLossScale, GradScaler, PRECISIONS, type Precision, type GradScalerOptions } from './amp.js';
export { Embedding, CausalSelfAttention, TransformerBlock, GptBody, GPT, type GptOptions } from './transformer.js';
export { attentionForward, attentionBackward, type AttentionOptions, type AttentionSaved } from './attention.js';
export { mlp, cnn, gpt, buildModel, MODEL_NAMES, type ModelName, type ModelOptions, type MlpOptions, type CnnOptions } from './models.js';
export {
  add, embeddingForward, embeddingBackward, IGNORE_LABEL, biasAdd, biasGrad, reluForward, reluBackward, geluForward, geluBackward, layerNormForward, layerNormBackward,
  softmaxCrossEntropy, softmaxCrossEntropyBackward, im2col, col2im, maxPoolForward, maxPoolBackward, dropout,
  maskedScale, maskedAdd, nmMaskScale, cast, type Window2d, type LayerNormSaved, type LayerNormGrads, type XentResult, type MaxPoolSaved,
} from './elementwise.js';
