// N-API bindings of the optimizer updates (native/cpu/optim.h). Parameters, gradients and state are
// Float32Arrays updated in place; lib/optim/*.ts has validated them.
#include <cmath>
#include <string>

#include "cpu/optim.h"
#include "napi/args.h"
#include "napi/train_args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

int64_t count_arg(const Napi::CallbackInfo& info, size_t i) {
  const int64_t n = int_arg(info, i, "n");
  if (n < 0) fail("E_SHAPE", "n: got " + std::to_string(n) + ", expected a size >= 0");
  return n;
}
// A finite number option, as float.
float finite(Options& o, const char* key) {
  const double v = o.number(key);
  if (!std::isfinite(v)) fail("E_VALUE", o.where(key) + ": expected a finite number");
  return static_cast<float>(v);
}

// The optional SR-STE term of a step: options.mask (Uint8Array of n; absent or null: none) with options.lambda (a
// finite number, read only with a mask).
struct Term {
  const uint8_t* mask = nullptr;
  float lambda = 0.0f;
};
Term term_option(Options& o, int64_t n) {
  Term t;
  if (!o.given("mask")) return t;
  t.mask = typed_option<uint8_t>(o, "mask", n);
  t.lambda = finite(o, "lambda");
  return t;
}

void RegisterOptim(Napi::Env env, Napi::Object exports) {
  // sgdStep({p, g, buf (null without momentum), n, lr, momentum, dampening, weightDecay, nesterov, first, mask?, lambda?})
  define(env, exports, "sgdStep", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "sgdStep");
    const int64_t n = size_option(o, "n");
    cpu::SgdArgs a;
    a.lr = finite(o, "lr");
    a.momentum = finite(o, "momentum");
    a.dampening = finite(o, "dampening");
    a.weight_decay = finite(o, "weightDecay");
    a.nesterov = o.boolean("nesterov");
    a.first = o.boolean("first");
    float* buf = optional_f32_option(o, "buf", n);
    if (a.momentum != 0.0f && !buf) fail("E_VALUE", o.where("buf") + ": a momentum buffer is required when momentum > 0");
    const Term t = term_option(o, n);
    float* p = f32_option(o, "p", n);
    float* g = f32_option(o, "g", n);
    o.done();
    cpu::sgd_step(p, g, a.momentum != 0.0f ? buf : nullptr, n, a, t.mask, t.lambda);
    return info.Env().Undefined();
  });
  // adamwStep({p, g, m, v, n, lr, beta1, beta2, eps, weightDecay, step, mask?, lambda?})
  define(env, exports, "adamwStep", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "adamwStep");
    const int64_t n = size_option(o, "n");
    cpu::AdamwArgs a;
    a.lr = finite(o, "lr");
    a.beta1 = finite(o, "beta1");
    a.beta2 = finite(o, "beta2");
    a.eps = finite(o, "eps");
    a.weight_decay = finite(o, "weightDecay");
    a.step = o.integer("step");
    if (a.step < 1) fail("E_VALUE", o.where("step") + ": expected an integer >= 1");
    if (!(a.beta1 >= 0 && a.beta1 < 1) || !(a.beta2 >= 0 && a.beta2 < 1))
      fail("E_VALUE", o.fn() + ": options.beta1 and beta2: expected 0 <= beta < 1");
    const Term t = term_option(o, n);
    float* p = f32_option(o, "p", n);
    float* g = f32_option(o, "g", n);
    float* m = f32_option(o, "m", n);
    float* v = f32_option(o, "v", n);
    o.done();
    cpu::adamw_step(p, g, m, v, n, a, t.mask, t.lambda);
    return info.Env().Undefined();
  });
  // sumSquares(x, n) -> Σ x² (double)
  define(env, exports, "sumSquares", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = count_arg(info, 1);
    return Napi::Number::New(info.Env(), cpu::sum_squares(f32_arg(info, 0, "x", n), n));
  });
  // scaleInplace(x, s, n): x ·= s
  define(env, exports, "scaleInplace", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = count_arg(info, 2);
    cpu::scale_inplace(f32_arg(info, 0, "x", n), static_cast<float>(number_arg(info, 1, "s")), n);
    return info.Env().Undefined();
  });
}

}  // namespace
NMS_NAPI_FAMILY(optim, RegisterOptim);
}  // namespace nms::napi
