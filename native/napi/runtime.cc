// Process-wide settings and facts: the CPU thread pool size and what this build contains.
#include "build_info.h"  // generated: NMSPARSE_VERSION, NMSPARSE_SOURCE_HASH
#include "core/activation.h"
#include "core/dtype.h"
#include "core/threadpool.h"
#include "napi/args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

void RegisterRuntime(Napi::Env env, Napi::Object exports) {
  define(env, exports, "setNumThreads", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = int_arg(info, 0, "n");
    if (n < 1 || n > 256) fail("E_VALUE", "setNumThreads(n): expected 1 <= n <= 256, got " + std::to_string(n));
    set_num_threads(static_cast<int>(n));
    return info.Env().Undefined();
  });
  define(env, exports, "numThreads", [](const Napi::CallbackInfo& info) -> Napi::Value {
    return Napi::Number::New(info.Env(), num_threads());
  });
  define(env, exports, "buildInfo", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Object o = Napi::Object::New(info.Env());
#ifdef NMSPARSE_WITH_CUDA
    o.Set("cuda", true);
#else
    o.Set("cuda", false);
#endif
    o.Set("napiVersion", NAPI_VERSION);
    o.Set("version", NMSPARSE_VERSION);
    o.Set("sourceHash", NMSPARSE_SOURCE_HASH);
    return o;
  });
  // enumTables() -> {dtype, activation}: the names of each enum, indexed by code (for the contract test).
  define(env, exports, "enumTables", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Array dtype = Napi::Array::New(env, kNumDTypes), act = Napi::Array::New(env, kNumActs);
    for (int i = 0; i < kNumDTypes; ++i) dtype.Set(static_cast<uint32_t>(i), dtype_name(static_cast<DType>(i)));
    for (int i = 0; i < kNumActs; ++i) act.Set(static_cast<uint32_t>(i), act_name(static_cast<Act>(i)));
    Napi::Object o = Napi::Object::New(env);
    o.Set("dtype", dtype);
    o.Set("activation", act);
    return o;
  });
}

}  // namespace
NMS_NAPI_FAMILY(runtime, RegisterRuntime);
}  // namespace nms::napi
