// N-API bindings of the CUDA training kernels (native/cuda/train.h): the arguments of the CPU bindings
// (native/napi/elementwise.cc, optim.cc, attention.cc; positional or one options object, as there) with CudaBuffers
// for tensors. Labels and max-pool indices stay host
// Int32Arrays as in the public API (uploaded / downloaded here).
#ifdef NMSPARSE_WITH_CUDA
#include <string>

#include "core/nm_format.h"
#include "cuda/device.h"
#include "cuda/ops.h"
#include "cuda/train.h"
#include "napi/args.h"
#include "napi/cuda_handles.h"
#include "napi/registry.h"
#include "napi/train_args.h"

namespace nms::napi {
namespace {

// `b` checked to hold `count` elements of `d`; `name` names it.
template <typename T>
T* device_elems(CudaBuffer* b, int64_t count, DType d, const std::string& name) {
  b->require(count, d, name.c_str());
  return static_cast<T*>(b->ptr());
}
float* f32(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t count) {
  return device_elems<float>(CudaBuffer::Arg(info, i, name), count, DType::F32, name);
}
uint8_t* u8(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t count) {
  return device_elems<uint8_t>(CudaBuffer::Arg(info, i, name), count, DType::U8, name);
}
// The options-object forms: an error names "<fn>: options.<key>".
float* f32(Options& o, const char* key, int64_t count) {
  return device_elems<float>(CudaBuffer::From(o.get(key), o.where(key)), count, DType::F32, o.where(key));
}
float* optional_f32(Options& o, const char* key, int64_t count) {
  if (!o.given(key)) return nullptr;
  return f32(o, key, count);
}
uint8_t* u8(Options& o, const char* key, int64_t count) {
  return device_elems<uint8_t>(CudaBuffer::From(o.get(key), o.where(key)), count, DType::U8, o.where(key));
}
// The bytes of a host Int32Array (read by buffer_arg or Options::buffer) of at least `count` entries.
void* int32_host(const Buf& b, const std::string& where, int64_t count) {
  if (!b.owner.IsTypedArray() || b.owner.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    fail("E_TYPE", where + ": expected an Int32Array");
  if (b.bytes < static_cast<size_t>(count) * 4)
    fail("E_SHAPE", where + ": " + std::to_string(b.bytes / 4) + " entries, needs " + std::to_string(count));
  return b.data;
}
// ... copied to the device.
cuda::DevPtr int32_upload(const Buf& b, const std::string& where, int64_t count) {
  const void* host = int32_host(b, where, count);
  cuda::DevPtr d = cuda::alloc(static_cast<size_t>(count) * 4);
  cuda::upload(d->ptr(), host, static_cast<size_t>(count) * 4);
  return d;
}

void same_buffer_forbidden(const void* a, const void* b, const char* what) {
  if (a && a == b) fail("E_VALUE", std::string(what) + " must not be the same tensor");
}

Napi::Value undef(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }


void RegisterCudaTrain(Napi::Env env, Napi::Object exports) {
  // cudaBiasAdd(y, b, rows, cols): y[r, c] += b[c]
  define(env, exports, "cudaBiasAdd", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 2, "rows"), cols = size_arg(info, 3, "cols");
    cuda::bias_add(f32(info, 0, "y", rows * cols), f32(info, 1, "bias", cols), rows, cols);
    return undef(info);
  });
  // cudaAdd(a, b, y, n): y = a + b
  define(env, exports, "cudaAdd", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 3, "n");
    cuda::add(f32(info, 0, "a", n), f32(info, 1, "b", n), f32(info, 2, "y", n), n);
    return undef(info);
  });
  // cudaEmbeddingForward(ids, table, out, rows, vocab, dim, accumulate)
  define(env, exports, "cudaEmbeddingForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 3, "rows"), vocab = size_arg(info, 4, "vocab"), dim = size_arg(info, 5, "dim");
    const float *ids = f32(info, 0, "ids", rows), *table = f32(info, 1, "table", vocab * dim);
    float* out = f32(info, 2, "out", rows * dim);
    same_buffer_forbidden(ids, out, "ids and out");
    same_buffer_forbidden(table, out, "table and out");
    cuda::embedding_forward(ids, table, out, rows, vocab, dim, bool_arg(info, 6, "accumulate"));
    return undef(info);
  });
  // cudaEmbeddingBackward(dy, ids, dtable, rows, vocab, dim, accumulate)
  define(env, exports, "cudaEmbeddingBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 3, "rows"), vocab = size_arg(info, 4, "vocab"), dim = size_arg(info, 5, "dim");
    const float *dy = f32(info, 0, "dy", rows * dim), *ids = f32(info, 1, "ids", rows);
    float* dtable = f32(info, 2, "dtable", vocab * dim);
    same_buffer_forbidden(dy, dtable, "dy and dtable");
    same_buffer_forbidden(ids, dtable, "ids and dtable");
    cuda::embedding_backward(dy, ids, dtable, rows, vocab, dim, bool_arg(info, 6, "accumulate"));
    return undef(info);
  });
  // cudaAttentionForward({qkv, out, probs, batch, t, heads, headDim, p, seed, offset})
  define(env, exports, "cudaAttentionForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaAttentionForward");
    const cuda::AttentionShape s = attention_option<cuda::AttentionShape>(o);
    const int64_t rows = s.batch * s.t, d = s.heads * s.hd;
    const float* qkv = f32(o, "qkv", rows * 3 * d);
    float *out = f32(o, "out", rows * d), *probs = f32(o, "probs", s.batch * s.heads * s.t * s.t);
    o.done();
    same_buffer_forbidden(qkv, out, "qkv and out");
    same_buffer_forbidden(qkv, probs, "qkv and probs");
    same_buffer_forbidden(out, probs, "out and probs");
    cuda::attention_forward(qkv, s, out, probs);
    return undef(info);
  });
  // cudaAttentionBackward({dout, qkv, probs, dqkv, batch, t, heads, headDim, p, seed, offset}); probs is overwritten
  define(env, exports, "cudaAttentionBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaAttentionBackward");
    const cuda::AttentionShape s = attention_option<cuda::AttentionShape>(o);
    const int64_t rows = s.batch * s.t, d = s.heads * s.hd;
    const float *dout = f32(o, "dout", rows * d), *qkv = f32(o, "qkv", rows * 3 * d);
    float *probs = f32(o, "probs", s.batch * s.heads * s.t * s.t), *dqkv = f32(o, "dqkv", rows * 3 * d);
    o.done();
    const void* bufs[] = {dout, qkv, probs, dqkv};
    for (int i = 0; i < 4; ++i)
      for (int j = i + 1; j < 4; ++j) same_buffer_forbidden(bufs[i], bufs[j], "dout, qkv, probs and dqkv");
    cuda::attention_backward(dout, qkv, s, probs, dqkv);
    return undef(info);
  });
  // cudaBiasGrad(dy, rows, cols, db)
  define(env, exports, "cudaBiasGrad", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 1, "rows"), cols = size_arg(info, 2, "cols");
    cuda::bias_grad(f32(info, 0, "dy", rows * cols), rows, cols, f32(info, 3, "db", cols));
    return undef(info);
  });
  // cudaReluForward(x, y, n), cudaReluBackward(dy, y, dx, n), cudaGeluForward(x, y, n), cudaGeluBackward(dy, x, dx, n)
  define(env, exports, "cudaReluForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 2, "n");
    cuda::relu_forward(f32(info, 0, "x", n), f32(info, 1, "y", n), n);
    return undef(info);
  });
  define(env, exports, "cudaReluBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 3, "n");
    cuda::relu_backward(f32(info, 0, "dy", n), f32(info, 1, "y", n), f32(info, 2, "dx", n), n);
    return undef(info);
  });
  define(env, exports, "cudaGeluForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 2, "n");
    cuda::gelu_forward(f32(info, 0, "x", n), f32(info, 1, "y", n), n);
    return undef(info);
  });
  define(env, exports, "cudaGeluBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 3, "n");
    cuda::gelu_backward(f32(info, 0, "dy", n), f32(info, 1, "x", n), f32(info, 2, "dx", n), n);
    return undef(info);
  });
  // cudaLayerNormForward({x, gamma?, beta?, y, mean, rstd, rows, cols, eps})
  define(env, exports, "cudaLayerNormForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaLayerNormForward");
    const int64_t rows = size_option(o, "rows"), cols = size_option(o, "cols");
    const double eps = o.number("eps");
    if (!(eps > 0)) fail("E_VALUE", o.where("eps") + ": expected a number > 0");
    const float* x = f32(o, "x", rows * cols);
    const float *gamma = optional_f32(o, "gamma", cols), *beta = optional_f32(o, "beta", cols);
    float *y = f32(o, "y", rows * cols), *mean = f32(o, "mean", rows), *rstd = f32(o, "rstd", rows);
    o.done();
    cuda::layernorm_forward(x, gamma, beta, y, mean, rstd, rows, cols, static_cast<float>(eps));
    return undef(info);
  });
  // cudaLayerNormBackward({dy, x, gamma?, mean, rstd, dx, dgamma?, dbeta?, rows, cols})
  define(env, exports, "cudaLayerNormBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaLayerNormBackward");
    const int64_t rows = size_option(o, "rows"), cols = size_option(o, "cols");
    const float *dy = f32(o, "dy", rows * cols), *x = f32(o, "x", rows * cols);
    const float* gamma = optional_f32(o, "gamma", cols);
    const float *mean = f32(o, "mean", rows), *rstd = f32(o, "rstd", rows);
    float* dx = f32(o, "dx", rows * cols);
    float *dgamma = optional_f32(o, "dgamma", cols), *dbeta = optional_f32(o, "dbeta", cols);
    o.done();
    same_buffer_forbidden(x, dx, "x and dx");
    cuda::layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, cols);
    return undef(info);
  });
  // cudaSoftmaxXentForward(logits, labels: Int32Array, probs, rows, cols, eps) -> [loss sum, correct, counted]
  define(env, exports, "cudaSoftmaxXentForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 3, "rows"), cols = size_arg(info, 4, "cols");
    if (rows < 1 || cols < 1) fail("E_SHAPE", "logits: expected a non-empty [rows, classes] tensor");
    const double eps = number_arg(info, 5, "labelSmoothing");
    const float* z = f32(info, 0, "logits", rows * cols);
    float* p = f32(info, 2, "probs", rows * cols);
    same_buffer_forbidden(z, p, "logits and probs");
    cuda::DevPtr labels = int32_upload(buffer_arg(info, 1, "labels"), "labels", rows);
    const cuda::XentResult s = cuda::softmax_xent_forward(z, labels->as<int32_t>(), p, rows, cols, static_cast<float>(eps));
    Napi::Array r = Napi::Array::New(info.Env(), 3);
    r.Set(0u, Napi::Number::New(info.Env(), s.loss_sum));
    r.Set(1u, Napi::Number::New(info.Env(), static_cast<double>(s.correct)));
    r.Set(2u, Napi::Number::New(info.Env(), static_cast<double>(s.counted)));
    return r;
  });
  // cudaSoftmaxXentBackward(probs, labels: Int32Array, dlogits, rows, cols, eps, scale)
  define(env, exports, "cudaSoftmaxXentBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 3, "rows"), cols = size_arg(info, 4, "cols");
    cuda::DevPtr labels = int32_upload(buffer_arg(info, 1, "labels"), "labels", rows);
    cuda::softmax_xent_backward(f32(info, 0, "probs", rows * cols), labels->as<int32_t>(), f32(info, 2, "dlogits", rows * cols),
                                rows, cols, static_cast<float>(number_arg(info, 5, "labelSmoothing")),
                                static_cast<float>(number_arg(info, 6, "scale")));
    return undef(info);
  });
  // cudaIm2col({x, cols, batch, h, w, c, kh, kw, strideH, strideW, padH, padW})
  define(env, exports, "cudaIm2col", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaIm2col");
    const cuda::Window2d g = window_option<cuda::Window2d>(o);
    const float* x = f32(o, "x", g.batch * g.h * g.w * g.c);
    float* cols = f32(o, "cols", g.batch * g.oh * g.ow * g.kh * g.kw * g.c);
    o.done();
    same_buffer_forbidden(x, cols, "x and cols");
    cuda::im2col(x, g, cols);
    return undef(info);
  });
  // cudaCol2im({cols, dx, batch, h, w, c, kh, kw, strideH, strideW, padH, padW})
  define(env, exports, "cudaCol2im", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaCol2im");
    const cuda::Window2d g = window_option<cuda::Window2d>(o);
    const float* cols = f32(o, "cols", g.batch * g.oh * g.ow * g.kh * g.kw * g.c);
    float* dx = f32(o, "dx", g.batch * g.h * g.w * g.c);
    o.done();
    same_buffer_forbidden(cols, dx, "cols and dx");
    cuda::col2im(cols, g, dx);
    return undef(info);
  });
  // cudaMaxPoolForward({x, y, argmax: Int32Array (host, filled), batch, h, w, c, kh, kw, strideH, strideW, padH, padW})
  define(env, exports, "cudaMaxPoolForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaMaxPoolForward");
    const cuda::Window2d g = window_option<cuda::Window2d>(o);
    const int64_t nx = g.batch * g.h * g.w * g.c, ny = g.batch * g.oh * g.ow * g.c;
    if (nx >= (int64_t(1) << 31)) fail("E_SHAPE", "cudaMaxPoolForward: fewer than 2^31 input elements needed");
    const float* x = f32(o, "x", nx);
    float* y = f32(o, "y", ny);
    void* host = int32_host(o.buffer("argmax"), o.where("argmax"), ny);
    o.done();
    same_buffer_forbidden(x, y, "x and y");
    cuda::DevPtr arg = cuda::alloc(static_cast<size_t>(ny) * 4);
    cuda::maxpool_forward(x, g, y, arg->as<int32_t>());
    cuda::download(host, arg->ptr(), static_cast<size_t>(ny) * 4);
    return undef(info);
  });
  // cudaMaxPoolBackward({dy, argmax: Int32Array, dx, batch, h, w, c, kh, kw, strideH, strideW, padH, padW})
  define(env, exports, "cudaMaxPoolBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaMaxPoolBackward");
    const cuda::Window2d g = window_option<cuda::Window2d>(o);
    const int64_t nx = g.batch * g.h * g.w * g.c, ny = g.batch * g.oh * g.ow * g.c;
    const float* dy = f32(o, "dy", ny);
    cuda::DevPtr arg = int32_upload(o.buffer("argmax"), o.where("argmax"), ny);
    float* dx = f32(o, "dx", nx);
    o.done();
    same_buffer_forbidden(dy, dx, "dy and dx");
    cuda::maxpool_backward(dy, arg->as<int32_t>(), g, dx);
    return undef(info);
  });
  // cudaDropout(x, y, n, p, seed, offset)
  define(env, exports, "cudaDropout", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 2, "n");
    const double p = number_arg(info, 3, "p");
    if (!(p >= 0 && p < 1)) fail("E_VALUE", "p: expected 0 <= p < 1");
    const int64_t seed = int_arg(info, 4, "seed"), offset = size_arg(info, 5, "offset");
    cuda::dropout_apply(f32(info, 0, "x", n), f32(info, 1, "y", n), n, static_cast<float>(p), static_cast<uint64_t>(seed),
                        static_cast<uint64_t>(offset));
    return undef(info);
  });
  // cudaMaskedScale(x, mask, alpha, y, n)
  define(env, exports, "cudaMaskedScale", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 4, "n");
    cuda::masked_scale(f32(info, 0, "x", n), u8(info, 1, "mask", n), static_cast<float>(number_arg(info, 2, "alpha")),
                       f32(info, 3, "y", n), n);
    return undef(info);
  });
  // cudaMaskedAdd(g, w, mask, lambda, n)
  define(env, exports, "cudaMaskedAdd", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 4, "n");
    cuda::masked_add(f32(info, 0, "g", n), f32(info, 1, "w", n), u8(info, 2, "mask", n),
                     static_cast<float>(number_arg(info, 3, "lambda")), n);
    return undef(info);
  });
  // cudaNmMaskScale({w, rows, cols, n, m, alpha, mask, eff})
  define(env, exports, "cudaNmMaskScale", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaNmMaskScale");
    const int64_t rows = size_option(o, "rows"), cols = size_option(o, "cols");
    const int64_t n = o.integer("n"), m = o.integer("m");
    nm_validate(rows, cols, n, m);
    const float alpha = static_cast<float>(o.number("alpha"));
    const float* w = f32(o, "w", rows * cols);
    uint8_t* mask = u8(o, "mask", rows * cols);
    float* eff = f32(o, "eff", rows * cols);
    o.done();
    same_buffer_forbidden(w, eff, "w and eff");
    cuda::nm_mask_scale(w, rows, cols, static_cast<int>(n), static_cast<int>(m), alpha, mask, eff);
    return undef(info);
  });
  // cudaNmTrainPass({w, rows, cols, n, m, mask, select, eff, sad, dtype, eff16}) -> CudaSparse: nmTrainPass's one
  // pass on the device (cuda/train.h nm_train_pass), its compressed weight made from it (cuda/ops.h from_train_pass).
  // `sad` (null: not counted), an 8-byte zeroed counter, receives the SAD when selecting (read it later: nothing here
  // waits for the GPU). dtype float16/bfloat16 (mixed-precision training, lib/nn/amp.ts): eff stays float32 and
  // eff16 receives it in that dtype; the compressed weight is of that dtype, made from eff16, so that its 2:4 form is
  // cuSPARSELt's. eff16 is read only then (absent or null for float32).
  define(env, exports, "cudaNmTrainPass", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaNmTrainPass");
    const int64_t rows = size_option(o, "rows"), cols = size_option(o, "cols");
    const int64_t n = o.integer("n"), m = o.integer("m");
    nm_validate(rows, cols, n, m);
    const int ni = static_cast<int>(n), mi = static_cast<int>(m);
    const float* w = f32(o, "w", rows * cols);
    uint8_t* mask = u8(o, "mask", rows * cols);
    CudaBuffer* eff = CudaBuffer::From(o.get("eff"), o.where("eff"));
    eff->require(rows * cols, DType::F32, o.where("eff").c_str());
    unsigned long long* sad = nullptr;
    if (o.given("sad")) {
      CudaBuffer* b = CudaBuffer::From(o.get("sad"), o.where("sad"));
      b->require(8, DType::U8, o.where("sad").c_str());
      sad = static_cast<unsigned long long*>(b->ptr());
    }
    const bool select = o.boolean("select");
    const DType d = o.dtype("dtype");
    if (d != DType::F32 && d != DType::F16 && d != DType::BF16)
      fail("E_DTYPE", o.where("dtype") + ": expected float32, float16 or bfloat16, got " + dtype_name(d));
    CudaBuffer* eff16 = nullptr;
    if (d != DType::F32) {
      eff16 = CudaBuffer::From(o.get("eff16"), o.where("eff16"));
      eff16->require(rows * cols, d, o.where("eff16").c_str());
      same_buffer_forbidden(eff16->ptr(), eff->ptr(), "eff16 and eff");
      same_buffer_forbidden(eff16->ptr(), w, "eff16 and w");
      same_buffer_forbidden(eff16->ptr(), mask, "eff16 and mask");
    } else if (o.given("eff16")) {
      fail("E_VALUE", o.where("eff16") + ": only for a float16 or bfloat16 dtype");
    }
    o.done();
    same_buffer_forbidden(w, eff->ptr(), "w and eff");
    same_buffer_forbidden(mask, eff->ptr(), "mask and eff");
    same_buffer_forbidden(mask, w, "mask and w");
    // Zeroed: a given mask that keeps fewer than n in a group leaves slots the kernel does not write.
    const int64_t kept = rows * nm_kept_per_row(cols, ni, mi);
    cuda::DevPtr values = cuda::alloc_zeroed(static_cast<size_t>(kept) * sizeof(float));
    cuda::DevPtr positions = cuda::alloc_zeroed(static_cast<size_t>(rows * nm_pos_row_bytes(cols, ni, mi)));
    cuda::nm_train_pass(w, rows, cols, ni, mi, mask, select, static_cast<float*>(eff->ptr()),
                        values->as<float>(), positions->as<uint8_t>(), sad);
    if (d == DType::F32)
      return CudaSparse::Wrap(info.Env(), cuda::from_train_pass(std::move(values), std::move(positions), eff->mem(),
                                                                rows, cols, ni, mi));
    // The 16-bit form: one conversion of the values and one of eff (stream-ordered after the pass).
    cuda::DevPtr values16 = cuda::alloc(static_cast<size_t>(kept) * dtype_size(d));
    cuda::convert(values->ptr(), DType::F32, values16->ptr(), d, kept);
    cuda::convert(eff->ptr(), DType::F32, eff16->ptr(), d, rows * cols);
    return CudaSparse::Wrap(info.Env(), cuda::from_train_pass(std::move(values16), std::move(positions), eff16->mem(),
                                                              rows, cols, ni, mi, d));
  });
  // cudaNmTransposedTrainForm(eff16, dtype, rows, cols) -> CudaSparse: W̃ᵀ [cols, rows] of a 16-bit training pass's
  // W ⊙ m whose mask is transposable 2:4 (cuda/ops.h transposed_train_form), for its sparse input gradient.
  define(env, exports, "cudaNmTransposedTrainForm", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const DType d = dtype_arg(info, 1, "dtype");
    if (d != DType::F16 && d != DType::BF16) fail("E_DTYPE", std::string("dtype: expected float16 or bfloat16, got ") + dtype_name(d));
    const int64_t rows = size_arg(info, 2, "rows"), cols = size_arg(info, 3, "cols");
    nm_validate(cols, rows, 2, 4);  // W̃ᵀ: 2:4 along its rows, of length `rows`
    CudaBuffer* eff = CudaBuffer::Arg(info, 0, "eff16");
    eff->require(rows * cols, d, "eff16");
    return CudaSparse::Wrap(info.Env(), cuda::transposed_train_form(eff->ptr(), d, rows, cols));
  });
  // cudaSgdStep({p, g, buf (null without momentum), n, lr, momentum, dampening, weightDecay, nesterov, first})
  define(env, exports, "cudaSgdStep", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaSgdStep");
    const int64_t n = size_option(o, "n");
    cuda::SgdArgs a;
    a.lr = static_cast<float>(o.number("lr"));
    a.momentum = static_cast<float>(o.number("momentum"));
    a.dampening = static_cast<float>(o.number("dampening"));
    a.weight_decay = static_cast<float>(o.number("weightDecay"));
    a.nesterov = o.boolean("nesterov");
    a.first = o.boolean("first");
    float* buf = optional_f32(o, "buf", n);
    if (a.momentum != 0.0f && !buf) fail("E_VALUE", o.where("buf") + ": a momentum buffer is required when momentum > 0");
    float* p = f32(o, "p", n);
    float* g = f32(o, "g", n);
    o.done();
    cuda::sgd_step(p, g, buf, n, a);
    return undef(info);
  });
  // cudaAdamwStep({p, g, m, v, n, lr, beta1, beta2, eps, weightDecay, step})
  define(env, exports, "cudaAdamwStep", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaAdamwStep");
    const int64_t n = size_option(o, "n");
    cuda::AdamwArgs a;
    a.lr = static_cast<float>(o.number("lr"));
    a.beta1 = static_cast<float>(o.number("beta1"));
    a.beta2 = static_cast<float>(o.number("beta2"));
    a.eps = static_cast<float>(o.number("eps"));
    a.weight_decay = static_cast<float>(o.number("weightDecay"));
    a.step = o.integer("step");
    if (a.step < 1) fail("E_VALUE", o.where("step") + ": expected >= 1");
    float* p = f32(o, "p", n);
    float* g = f32(o, "g", n);
    float* m = f32(o, "m", n);
    float* v = f32(o, "v", n);
    o.done();
    cuda::adamw_step(p, g, m, v, n, a);
    return undef(info);
  });
  // cudaSumSquares(x, n) -> Σ x² (float64; waits for the GPU)
  define(env, exports, "cudaSumSquares", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 1, "n");
    return Napi::Number::New(info.Env(), cuda::sum_squares(f32(info, 0, "x", n), n));
  });
  // cudaScaleInplace(x, s, n)
  define(env, exports, "cudaScaleInplace", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 2, "n");
    cuda::scale_inplace(f32(info, 0, "x", n), static_cast<float>(number_arg(info, 1, "s")), n);
    return undef(info);
  });
}

}  // namespace
NMS_NAPI_FAMILY(cuda_train, RegisterCudaTrain);
}  // namespace nms::napi
#endif  // NMSPARSE_WITH_CUDA
