// N-API bindings of causal self-attention (native/cpu/attention.h). lib/nn/attention.ts has validated shapes with
// user-facing messages; these checks keep a bad call from reaching the kernel.
#include <string>

#include "cpu/attention.h"
#include "napi/args.h"
#include "napi/registry.h"
#include "napi/train_args.h"

namespace nms::napi {
namespace {

void RegisterAttention(Napi::Env env, Napi::Object exports) {
  // attentionForward({qkv, out, probs, batch, t, heads, headDim, p, seed, offset})
  define(env, exports, "attentionForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "attentionForward");
    const cpu::AttentionShape s = attention_option<cpu::AttentionShape>(o);
    const int64_t rows = s.batch * s.t, d = s.heads * s.hd, np = s.batch * s.heads * s.t * s.t;
    const float* qkv = f32_option(o, "qkv", rows * 3 * d);
    float* out = f32_option(o, "out", rows * d);
    float* probs = f32_option(o, "probs", np);
    o.done();
    require_disjoint(qkv, rows * 3 * d * 4, out, rows * d * 4, "qkv and out");
    require_disjoint(qkv, rows * 3 * d * 4, probs, np * 4, "qkv and probs");
    require_disjoint(out, rows * d * 4, probs, np * 4, "out and probs");
    cpu::attention_forward(qkv, s, out, probs);
    return info.Env().Undefined();
  });
  // attentionBackward({dout, qkv, probs, dqkv, batch, t, heads, headDim, p, seed, offset}); probs is overwritten
  define(env, exports, "attentionBackward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "attentionBackward");
    const cpu::AttentionShape s = attention_option<cpu::AttentionShape>(o);
    const int64_t rows = s.batch * s.t, d = s.heads * s.hd, np = s.batch * s.heads * s.t * s.t;
    const float* dout = f32_option(o, "dout", rows * d);
    const float* qkv = f32_option(o, "qkv", rows * 3 * d);
    float* probs = f32_option(o, "probs", np);
    float* dqkv = f32_option(o, "dqkv", rows * 3 * d);
    o.done();
    const struct { const void* p; int64_t bytes; const char* name; } bufs[] = {
        {dout, rows * d * 4, "dout"}, {qkv, rows * 3 * d * 4, "qkv"}, {probs, np * 4, "probs"}, {dqkv, rows * 3 * d * 4, "dqkv"}};
    for (size_t i = 0; i < 4; ++i)
      for (size_t j = i + 1; j < 4; ++j)
        require_disjoint(bufs[i].p, bufs[i].bytes, bufs[j].p, bufs[j].bytes, (std::string(bufs[i].name) + " and " + bufs[j].name).c_str());
    cpu::attention_backward(dout, qkv, s, probs, dqkv);
    return info.Env().Undefined();
  });
}

}  // namespace
NMS_NAPI_FAMILY(attention, RegisterAttention);
}  // namespace nms::napi
