// N-API bindings of the CPU training kernels (native/cpu/elementwise.h). float32 buffers arrive as
// Float32Arrays, labels and pooling indices as Int32Arrays, masks as Uint8Arrays; lib/nn/elementwise.ts has
// validated shapes with user-facing messages, and these checks keep a bad call from reaching a kernel.
#include <algorithm>
#include <string>

#include "core/nm_format.h"
#include "cpu/elementwise.h"
#include "napi/args.h"
#include "napi/train_args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

// Labels in [0, cols) or the ignore label −1: a bad label would index past its row.
const int32_t* labels_arg(const Napi::CallbackInfo& info, size_t i, int64_t rows, int64_t cols) {
  const int32_t* labels = typed_arg<int32_t>(info, i, "labels", rows);
  for (int64_t r = 0; r < rows; ++r)
    if ((labels[r] < 0 || labels[r] >= cols) && labels[r] != cpu::kIgnoreLabel)
      fail("E_VALUE", "labels[" + std::to_string(r) + "]: got " + std::to_string(labels[r]) + ", expected 0 <= label < " +
                          std::to_string(cols) + " or -1 (ignored)");
  return labels;
}

// Token ids: float32 holding integers in [0, vocab), the rows of an embedding table.
const float* ids_arg(const Napi::CallbackInfo& info, size_t i, int64_t rows, int64_t vocab) {
  const float* ids = f32_arg(info, i, "ids", rows);
  for (int64_t r = 0; r < rows; ++r)
    if (!(ids[r] >= 0 && ids[r] < static_cast<float>(vocab) && ids[r] == static_cast<float>(static_cast<int64_t>(ids[r]))))
      fail("E_VALUE", "ids[" + std::to_string(r) + "]: got " + std::to_string(ids[r]) + ", expected an integer id in [0, " +
                          std::to_string(vocab) + ")");
  return ids;
}


void RegisterElementwise(Napi::Env env, Napi::Object exports) {
  // biasAdd(y, b, rows, cols): y[r, c] += b[c]
  define(env, exports, "biasAdd", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 2, "rows"), cols = size_arg(info, 3, "cols");
    float* y = f32_arg(info, 0, "y", rows * cols);
    const float* b = f32_arg(info, 1, "b", cols);
    require_disjoint(y, rows * cols * 4, b, cols * 4, "y and b");
    cpu::bias_add(y, b, rows, cols);
    return info.Env().Undefined();
  });
  // biasGrad(dy, rows, cols, db): db[c] = Σ_r dy[r, c]
  define(env, exports, "biasGrad", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 1, "rows"), cols = size_arg(info, 2, "cols");
    const float* dy = f32_arg(info, 0, "dy", rows * cols);
    float* db = f32_arg(info, 3, "db", cols);
    require_disjoint(dy, rows * cols * 4, db, cols * 4, "dy and db");
    cpu::bias_grad(dy, rows, cols, db);
    return info.Env().Undefined();
  });
  // add(a, b, y, n): y = a + b
  define(env, exports, "add", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 3, "n");
    const float *a = f32_arg(info, 0, "a", n), *b = f32_arg(info, 1, "b", n);
    float* y = f32_arg(info, 2, "y", n);
    require_same_or_disjoint(a, n * 4, y, n * 4, "a and y");
    require_same_or_disjoint(b, n * 4, y, n * 4, "b and y");
    cpu::add(a, b, y, n);
    return info.Env().Undefined();
  });
  // embeddingForward(ids, table, out, rows, vocab, dim, accumulate): out[r] (+)= table[ids[r]]
  define(env, exports, "embeddingForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 3, "rows"), vocab = size_arg(info, 4, "vocab"), dim = size_arg(info, 5, "dim");
    const float* ids = ids_arg(info, 0, rows, vocab);
    const float* table = f32_arg(info, 1, "table", vocab * dim);
    float* out = f32_arg(info, 2, "out", rows * dim);
    require_disjoint(out, rows * dim * 4, ids, rows * 4, "out and ids");
    require_disjoint(out, rows * dim * 4, table, vocab * dim * 4, "out and table");
    cpu::embedding_forward(ids, table, out, rows, vocab, dim, bool_arg(info, 6, "accumulate"));
    return info.Env().Undefined();
  });
  // embeddingBackward(dy, ids, dtable, rows, vocab, dim, accumulate): dtable[v] (+)= Σ_{ids[r] = v} dy[r]
  define(env, exports, "embeddingBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 3, "rows"), vocab = size_arg(info, 4, "vocab"), dim = size_arg(info, 5, "dim");
    const float* dy = f32_arg(info, 0, "dy", rows * dim);
    const float* ids = ids_arg(info, 1, rows, vocab);
    float* dtable = f32_arg(info, 2, "dtable", vocab * dim);
    require_disjoint(dtable, vocab * dim * 4, dy, rows * dim * 4, "dtable and dy");
    require_disjoint(dtable, vocab * dim * 4, ids, rows * 4, "dtable and ids");
    cpu::embedding_backward(dy, ids, dtable, rows, vocab, dim, bool_arg(info, 6, "accumulate"));
    return info.Env().Undefined();
  });
  // reluForward(x, y, n) / geluForward(x, y, n); reluBackward(dy, y, dx, n) / geluBackward(dy, x, dx, n)
  define(env, exports, "reluForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 2, "n");
    const float* x = f32_arg(info, 0, "x", n);
    float* y = f32_arg(info, 1, "y", n);
    require_same_or_disjoint(x, n * 4, y, n * 4, "x and y");
    cpu::relu_forward(x, y, n);
    return info.Env().Undefined();
  });
  define(env, exports, "reluBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 3, "n");
    const float *dy = f32_arg(info, 0, "dy", n), *y = f32_arg(info, 1, "y", n);
    float* dx = f32_arg(info, 2, "dx", n);
    require_same_or_disjoint(dy, n * 4, dx, n * 4, "dy and dx");
    require_same_or_disjoint(y, n * 4, dx, n * 4, "y and dx");
    cpu::relu_backward(dy, y, dx, n);
    return info.Env().Undefined();
  });
  define(env, exports, "geluForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 2, "n");
    const float* x = f32_arg(info, 0, "x", n);
    float* y = f32_arg(info, 1, "y", n);
    require_same_or_disjoint(x, n * 4, y, n * 4, "x and y");
    cpu::gelu_forward(x, y, n);
    return info.Env().Undefined();
  });
  define(env, exports, "geluBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 3, "n");
    const float *dy = f32_arg(info, 0, "dy", n), *x = f32_arg(info, 1, "x", n);
    float* dx = f32_arg(info, 2, "dx", n);
    require_same_or_disjoint(dy, n * 4, dx, n * 4, "dy and dx");
    require_same_or_disjoint(x, n * 4, dx, n * 4, "x and dx");
    cpu::gelu_backward(dy, x, dx, n);
    return info.Env().Undefined();
  });
  // layerNormForward({x, gamma|null, beta|null, y, mean, rstd, rows, cols, eps})
  define(env, exports, "layerNormForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "layerNormForward");
    const int64_t rows = size_option(o, "rows"), cols = size_option(o, "cols");
    const double eps = o.number("eps");
    if (!(eps > 0)) fail("E_VALUE", o.where("eps") + ": expected a number > 0");
    const float* x = f32_option(o, "x", rows * cols);
    const float *gamma = optional_f32_option(o, "gamma", cols), *beta = optional_f32_option(o, "beta", cols);
    float *y = f32_option(o, "y", rows * cols), *mean = f32_option(o, "mean", rows), *rstd = f32_option(o, "rstd", rows);
    o.done();
    require_same_or_disjoint(x, rows * cols * 4, y, rows * cols * 4, "x and y");
    require_disjoint(y, rows * cols * 4, mean, rows * 4, "y and mean");
    require_disjoint(y, rows * cols * 4, rstd, rows * 4, "y and rstd");
    require_disjoint(mean, rows * 4, rstd, rows * 4, "mean and rstd");
    cpu::layernorm_forward(x, gamma, beta, y, mean, rstd, rows, cols, static_cast<float>(eps));
    return info.Env().Undefined();
  });
  // layerNormBackward({dy, x, gamma|null, mean, rstd, dx, dgamma|null, dbeta|null, rows, cols})
  define(env, exports, "layerNormBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "layerNormBackward");
    const int64_t rows = size_option(o, "rows"), cols = size_option(o, "cols");
    const float *dy = f32_option(o, "dy", rows * cols), *x = f32_option(o, "x", rows * cols);
    const float* gamma = optional_f32_option(o, "gamma", cols);
    const float *mean = f32_option(o, "mean", rows), *rstd = f32_option(o, "rstd", rows);
    float* dx = f32_option(o, "dx", rows * cols);
    float* dgamma = optional_f32_option(o, "dgamma", cols);
    float* dbeta = optional_f32_option(o, "dbeta", cols);
    o.done();
    if (dgamma) require_disjoint(dy, rows * cols * 4, dgamma, cols * 4, "dy and dgamma");
    if (dbeta) require_disjoint(dy, rows * cols * 4, dbeta, cols * 4, "dy and dbeta");
    cpu::layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, cols);
    return info.Env().Undefined();
  });
  // softmaxXentForward(logits, labels: Int32Array, probs, rows, cols, labelSmoothing) -> [lossSum, correct, counted]
  define(env, exports, "softmaxXentForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 3, "rows"), cols = size_arg(info, 4, "cols");
    if (cols < 1) fail("E_SHAPE", "cols: expected at least one class");
    const int32_t* labels = labels_arg(info, 1, rows, cols);
    const double eps = number_arg(info, 5, "labelSmoothing");
    if (!(eps >= 0 && eps <= 1)) fail("E_VALUE", "labelSmoothing: expected a number in [0, 1]");
    const float* logits = f32_arg(info, 0, "logits", rows * cols);
    float* probs = f32_arg(info, 2, "probs", rows * cols);
    // Not even in place: the kernel reads each logit again after writing its probability.
    require_disjoint(logits, rows * cols * 4, probs, rows * cols * 4, "logits and probs");
    const cpu::XentResult r = cpu::softmax_xent_forward(logits, labels, probs, rows, cols, static_cast<float>(eps));
    Napi::Array out = Napi::Array::New(info.Env(), 3);
    out.Set(0u, Napi::Number::New(info.Env(), r.loss_sum));
    out.Set(1u, Napi::Number::New(info.Env(), static_cast<double>(r.correct)));
    out.Set(2u, Napi::Number::New(info.Env(), static_cast<double>(r.counted)));
    return out;
  });
  // softmaxXentBackward(probs, labels, dlogits, rows, cols, labelSmoothing, scale)
  define(env, exports, "softmaxXentBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = size_arg(info, 3, "rows"), cols = size_arg(info, 4, "cols");
    const int32_t* labels = labels_arg(info, 1, rows, cols);
    const float* probs = f32_arg(info, 0, "probs", rows * cols);
    float* dlogits = f32_arg(info, 2, "dlogits", rows * cols);
    require_same_or_disjoint(probs, rows * cols * 4, dlogits, rows * cols * 4, "probs and dlogits");
    cpu::softmax_xent_backward(probs, labels, dlogits, rows, cols, static_cast<float>(number_arg(info, 5, "labelSmoothing")),
                               static_cast<float>(number_arg(info, 6, "scale")));
    return info.Env().Undefined();
  });
  // im2col({x, cols, batch, h, w, c, kh, kw, strideH, strideW, padH, padW})
  define(env, exports, "im2col", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "im2col");
    const cpu::Window2d g = window_option<cpu::Window2d>(o);
    const int64_t nx = g.batch * g.h * g.w * g.c, nc = g.batch * g.oh * g.ow * g.kh * g.kw * g.c;
    const float* x = f32_option(o, "x", nx);
    float* cols = f32_option(o, "cols", nc);
    o.done();
    require_disjoint(x, nx * 4, cols, nc * 4, "x and cols");
    cpu::im2col(x, g, cols);
    return info.Env().Undefined();
  });
  // col2im({cols, dx, batch, h, w, c, kh, kw, strideH, strideW, padH, padW})
  define(env, exports, "col2im", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "col2im");
    const cpu::Window2d g = window_option<cpu::Window2d>(o);
    const int64_t nx = g.batch * g.h * g.w * g.c, nc = g.batch * g.oh * g.ow * g.kh * g.kw * g.c;
    const float* cols = f32_option(o, "cols", nc);
    float* dx = f32_option(o, "dx", nx);
    o.done();
    require_disjoint(dx, nx * 4, cols, nc * 4, "cols and dx");
    cpu::col2im(cols, g, dx);
    return info.Env().Undefined();
  });
  // maxPoolForward({x, y, argmax: Int32Array, batch, h, w, c, kh, kw, strideH, strideW, padH, padW})
  define(env, exports, "maxPoolForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "maxPoolForward");
    const cpu::Window2d g = window_option<cpu::Window2d>(o);
    const int64_t nx = g.batch * g.h * g.w * g.c, ny = g.batch * g.oh * g.ow * g.c;
    if (nx > 2147483647) fail("E_SHAPE", "maxPoolForward: at most 2^31 - 1 input elements");
    if (g.pad_h * 2 > g.kh || g.pad_w * 2 > g.kw) fail("E_VALUE", "maxPoolForward: options.padH, padW: expected at most half the window");
    const float* x = f32_option(o, "x", nx);
    float* y = f32_option(o, "y", ny);
    int32_t* arg = typed_option<int32_t>(o, "argmax", ny);
    o.done();
    require_disjoint(x, nx * 4, y, ny * 4, "x and y");
    require_disjoint(x, nx * 4, arg, ny * 4, "x and argmax");
    require_disjoint(y, ny * 4, arg, ny * 4, "y and argmax");
    cpu::maxpool_forward(x, g, y, arg);
    return info.Env().Undefined();
  });
  // maxPoolBackward({dy, argmax, dx, batch, h, w, c, kh, kw, strideH, strideW, padH, padW})
  define(env, exports, "maxPoolBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "maxPoolBackward");
    const cpu::Window2d g = window_option<cpu::Window2d>(o);
    const int64_t nx = g.batch * g.h * g.w * g.c, ny = g.batch * g.oh * g.ow * g.c;
    const float* dy = f32_option(o, "dy", ny);
    const int32_t* arg = typed_option<int32_t>(o, "argmax", ny);
    float* dx = f32_option(o, "dx", nx);
    o.done();
    require_disjoint(dy, ny * 4, dx, nx * 4, "dy and dx");
    require_disjoint(arg, ny * 4, dx, nx * 4, "argmax and dx");
    cpu::maxpool_backward(dy, arg, g, dx);
    return info.Env().Undefined();
  });
  // dropout(x, y, n, p, seed, offset): y = keep ? x/(1-p) : 0, keep from the counter-based generator
  define(env, exports, "dropout", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 2, "n");
    const double p = number_arg(info, 3, "p");
    if (!(p >= 0 && p < 1)) fail("E_VALUE", "p: expected 0 <= p < 1");
    const int64_t seed = int_arg(info, 4, "seed"), offset = size_arg(info, 5, "offset");
    const float* x = f32_arg(info, 0, "x", n);
    float* y = f32_arg(info, 1, "y", n);
    require_same_or_disjoint(x, n * 4, y, n * 4, "x and y");
    cpu::dropout_apply(x, y, n, static_cast<float>(p),
                       static_cast<uint64_t>(seed), static_cast<uint64_t>(offset));
    return info.Env().Undefined();
  });
  // maskedScale(x, mask: Uint8Array, alpha, y, n): y = m ? x : alpha·x
  define(env, exports, "maskedScale", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 4, "n");
    const float* x = f32_arg(info, 0, "x", n);
    const uint8_t* mask = typed_arg<uint8_t>(info, 1, "mask", n);
    float* y = f32_arg(info, 3, "y", n);
    require_same_or_disjoint(x, n * 4, y, n * 4, "x and y");
    require_disjoint(mask, n, y, n * 4, "mask and y");
    cpu::masked_scale(x, mask, static_cast<float>(number_arg(info, 2, "alpha")), y, n);
    return info.Env().Undefined();
  });
  // maskedAdd(g, w, mask: Uint8Array, lambda, n): g += lambda·(1 − m)·w
  define(env, exports, "maskedAdd", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = size_arg(info, 4, "n");
    float* g = f32_arg(info, 0, "g", n);
    const float* w = f32_arg(info, 1, "w", n);
    const uint8_t* mask = typed_arg<uint8_t>(info, 2, "mask", n);
    require_same_or_disjoint(g, n * 4, w, n * 4, "g and w");
    require_disjoint(mask, n, g, n * 4, "mask and g");
    cpu::masked_add(g, w, mask, static_cast<float>(number_arg(info, 3, "lambda")), n);
    return info.Env().Undefined();
  });
  // nmMaskScale({w, rows, cols, n, m, alpha, mask: Uint8Array, eff}): mask = N:M mask of w, eff = w ⊙ (m + (1 − m)α)
  define(env, exports, "nmMaskScale", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "nmMaskScale");
    const int64_t rows = size_option(o, "rows"), cols = size_option(o, "cols");
    const int64_t n = o.integer("n"), m = o.integer("m");
    nm_validate(rows, cols, n, m);
    const float alpha = static_cast<float>(o.number("alpha"));
    const float* w = f32_option(o, "w", rows * cols);
    uint8_t* mask = typed_option<uint8_t>(o, "mask", rows * cols);
    float* eff = f32_option(o, "eff", rows * cols);
    o.done();
    require_disjoint(w, rows * cols * 4, eff, rows * cols * 4, "w and eff");
    require_disjoint(w, rows * cols * 4, mask, rows * cols, "w and mask");
    require_disjoint(eff, rows * cols * 4, mask, rows * cols, "eff and mask");
    cpu::nm_mask_scale(w, rows, cols, static_cast<int>(n), static_cast<int>(m), alpha, mask, eff);
    return info.Env().Undefined();
  });
  // nmTrainPass({w, rows, cols, n, m, mask, select, countSad, eff, values, positions}) → SAD: the training step's
  // mask (selected from |w|, or as given), eff = w ⊙ m (eff null: not written) and its compressed form in one pass
  // (cpu/elementwise.h)
  define(env, exports, "nmTrainPass", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "nmTrainPass");
    const int64_t rows = size_option(o, "rows"), cols = size_option(o, "cols");
    const int64_t n = o.integer("n"), m = o.integer("m");
    nm_validate(rows, cols, n, m);
    const int64_t size = rows * cols, kept = rows * nm_kept_per_row(cols, static_cast<int>(n), static_cast<int>(m));
    const int64_t pbytes = rows * nm_pos_row_bytes(cols, static_cast<int>(n), static_cast<int>(m));
    const float* w = f32_option(o, "w", size);
    uint8_t* mask = typed_option<uint8_t>(o, "mask", size);
    float* eff = optional_f32_option(o, "eff", size);
    float* values = f32_option(o, "values", kept);
    uint8_t* positions = typed_option<uint8_t>(o, "positions", pbytes);
    const bool select = o.boolean("select"), count_sad = o.boolean("countSad");
    o.done();
    const struct { const void* p; int64_t bytes; const char* name; } bufs[] = {
        {w, size * 4, "w"}, {mask, size, "mask"}, {eff, size * 4, "eff"}, {values, kept * 4, "values"}, {positions, pbytes, "positions"}};
    for (size_t i = 0; i < 5; ++i)
      for (size_t j = i + 1; j < 5; ++j)
        require_disjoint(bufs[i].p, bufs[i].bytes, bufs[j].p, bufs[j].bytes, (std::string(bufs[i].name) + " and " + bufs[j].name).c_str());
    const int64_t sad = cpu::nm_train_pass(w, rows, cols, static_cast<int>(n), static_cast<int>(m), mask, select,
                                           count_sad, eff, values, positions);
    return Napi::Number::New(info.Env(), static_cast<double>(sad));
  });
}

}  // namespace
NMS_NAPI_FAMILY(elementwise, RegisterElementwise);
}  // namespace nms::napi
