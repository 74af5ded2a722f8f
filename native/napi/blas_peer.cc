// N-API bindings of the OpenBLAS peer (native/cpu/blas_peer.h), for the CPU benchmark only.
#include <string>

#include "cpu/blas_peer.h"
#include "napi/args.h"
#include "napi/product_args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

void RegisterBlasPeer(Napi::Env env, Napi::Object exports) {
  // blasPeer() -> {available, path?, error?, config?, corename?, threads?}
  define(env, exports, "blasPeer", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const cpu::blas_peer::Info& p = cpu::blas_peer::info();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("available", p.available);
    if (!p.path.empty()) o.Set("path", p.path);
    if (!p.error.empty()) o.Set("error", p.error);
    if (!p.config.empty()) o.Set("config", p.config);
    if (!p.corename.empty()) o.Set("corename", p.corename);
    if (p.threads > 0) o.Set("threads", p.threads);
    return o;
  });
  // blasSgemm({a, b, c, m, n, k, transA, transB}): float32 C[m,n] = op(A)·op(B) through cblas_sgemm, synchronous.
  define(env, exports, "blasSgemm", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "blasSgemm");
    Buf a = o.buffer("a"), b = o.buffer("b"), c = o.buffer("c");
    const int64_t m = o.integer("m"), n = o.integer("n"), k = o.integer("k");
    const bool ta = o.boolean("transA"), tb = o.boolean("transB");
    o.done();
    if (m < 1 || n < 1 || k < 1)
      fail("E_SHAPE", "blasSgemm: expected m, n, k >= 1, got m=" + std::to_string(m) + " n=" + std::to_string(n) +
                          " k=" + std::to_string(k));
    require_elems(a, elems(m, k, "a"), DType::F32, "a");
    require_elems(b, elems(k, n, "b"), DType::F32, "b");
    require_elems(c, elems(m, n, "c"), DType::F32, "c");
    require_apart(c, a, "c", "a");
    require_apart(c, b, "c", "b");
    cpu::blas_peer::sgemm(static_cast<const float*>(a.data), static_cast<const float*>(b.data),
                          static_cast<float*>(c.data), m, n, k, ta, tb);
    return info.Env().Undefined();
  });
}

}  // namespace
NMS_NAPI_FAMILY(blas_peer, RegisterBlasPeer);
}  // namespace nms::napi
