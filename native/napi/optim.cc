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
float finite(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const double v = number_arg(info, i, name);
  if (!std::isfinite(v)) fail("E_VALUE", std::string(name) + ": expected a finite number");
  return static_cast<float>(v);
}

// The optional SR-STE term of a step: (mask: Uint8Array of n, or null; lambda: a finite number) at info[i], info[i + 1].
struct Term {
  const uint8_t* mask = nullptr;
  float lambda = 0.0f;
};
Term term_arg(const Napi::CallbackInfo& info, size_t i, int64_t n) {
  Term t;
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return t;
  t.mask = typed_arg<uint8_t>(info, i, "mask", n);
  t.lambda = finite(info, i + 1, "lambda");
  return t;
}

void RegisterOptim(Napi::Env env, Napi::Object exports) {
  // sgdStep(p, g, buf|null, n, lr, momentum, dampening, weightDecay, nesterov, first, mask|null, lambda)
  define(env, exports, "sgdStep", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = count_arg(info, 3);
    cpu::SgdArgs a;
    a.lr = finite(info, 4, "lr");
    a.momentum = finite(info, 5, "momentum");
    a.dampening = finite(info, 6, "dampening");
    a.weight_decay = finite(info, 7, "weightDecay");
    a.nesterov = bool_arg(info, 8, "nesterov");
    a.first = bool_arg(info, 9, "first");
    float* buf = nullptr;
    if (a.momentum != 0.0f) buf = f32_arg(info, 2, "buf", n);
    const Term t = term_arg(info, 10, n);
    cpu::sgd_step(f32_arg(info, 0, "p", n), f32_arg(info, 1, "g", n), buf, n, a, t.mask, t.lambda);
    return info.Env().Undefined();
  });
  // adamwStep(p, g, m, v, n, lr, beta1, beta2, eps, weightDecay, step, mask|null, lambda)
  define(env, exports, "adamwStep", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = count_arg(info, 4);
    cpu::AdamwArgs a;
    a.lr = finite(info, 5, "lr");
    a.beta1 = finite(info, 6, "beta1");
    a.beta2 = finite(info, 7, "beta2");
    a.eps = finite(info, 8, "eps");
    a.weight_decay = finite(info, 9, "weightDecay");
    a.step = int_arg(info, 10, "step");
    if (a.step < 1) fail("E_VALUE", "step: expected an integer >= 1");
    if (!(a.beta1 >= 0 && a.beta1 < 1) || !(a.beta2 >= 0 && a.beta2 < 1))
      fail("E_VALUE", "betas: expected 0 <= beta < 1");
    const Term t = term_arg(info, 11, n);
    cpu::adamw_step(f32_arg(info, 0, "p", n), f32_arg(info, 1, "g", n), f32_arg(info, 2, "m", n), f32_arg(info, 3, "v", n), n, a, t.mask, t.lambda);
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
