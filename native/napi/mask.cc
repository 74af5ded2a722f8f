// N-API bindings of the CPU N:M mask family (native/cpu/mask.h). Tensors arrive as TypedArrays viewed as
// [rows, cols]; lib/mask.ts has already validated them with user-facing messages.
#include "core/nm_format.h"
#include "cpu/mask.h"
#include "napi/args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

struct NmArgs {
  Buf w;
  DType d;
  int64_t rows, cols;
  int n, m;
};

// (w, dtype, rows, cols, n, m) starting at argument `i`.
NmArgs nm_args(const Napi::CallbackInfo& info, size_t i) {
  NmArgs a{buffer_arg(info, i, "w"), dtype_arg(info, i + 1, "dtype"), int_arg(info, i + 2, "rows"),
           int_arg(info, i + 3, "cols"), 0, 0};
  const int64_t n = int_arg(info, i + 4, "n"), m = int_arg(info, i + 5, "m");
  nm_validate(a.rows, a.cols, n, m);
  a.n = static_cast<int>(n);
  a.m = static_cast<int>(m);
  require_elems(a.w, a.rows * a.cols, a.d, "w");
  return a;
}

void RegisterMask(Napi::Env env, Napi::Object exports) {
  // nmMask(w, dtype, rows, cols, n, m, out: Uint8Array)
  define(env, exports, "nmMask", [](const Napi::CallbackInfo& info) -> Napi::Value {
    NmArgs a = nm_args(info, 0);
    Buf out = buffer_arg(info, 6, "out");
    require_elems(out, a.rows * a.cols, DType::U8, "out");
    require_disjoint(a.w.data, a.rows * a.cols * dtype_size(a.d), out.data, a.rows * a.cols, "w and out");
    cpu::nm_mask(a.w.data, a.d, a.rows, a.cols, a.n, a.m, static_cast<uint8_t*>(out.data));
    return info.Env().Undefined();
  });
  // nmPrune(w, dtype, rows, cols, n, m, out: same dtype)
  define(env, exports, "nmPrune", [](const Napi::CallbackInfo& info) -> Napi::Value {
    NmArgs a = nm_args(info, 0);
    Buf out = buffer_arg(info, 6, "out");
    require_elems(out, a.rows * a.cols, a.d, "out");
    const int64_t bytes = a.rows * a.cols * dtype_size(a.d);
    require_same_or_disjoint(a.w.data, bytes, out.data, bytes, "w and out");
    cpu::nm_prune(a.w.data, a.d, a.rows, a.cols, a.n, a.m, out.data);
    return info.Env().Undefined();
  });
  // nmCheck(w, dtype, rows, cols, n, m) -> -1, or [group index, non-zeros in it]
  define(env, exports, "nmCheck", [](const Napi::CallbackInfo& info) -> Napi::Value {
    NmArgs a = nm_args(info, 0);
    int nz = 0;
    const int64_t g = cpu::nm_check(a.w.data, a.d, a.rows, a.cols, a.n, a.m, &nz);
    if (g < 0) return Napi::Number::New(info.Env(), -1);
    Napi::Array r = Napi::Array::New(info.Env(), 2);
    r.Set(0u, Napi::Number::New(info.Env(), static_cast<double>(g)));
    r.Set(1u, Napi::Number::New(info.Env(), nz));
    return r;
  });
  // transposableMask(w, dtype, rows, cols, out: Uint8Array)
  define(env, exports, "transposableMask", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Buf w = buffer_arg(info, 0, "w");
    const DType d = dtype_arg(info, 1, "dtype");
    const int64_t rows = int_arg(info, 2, "rows"), cols = int_arg(info, 3, "cols");
    if (rows < 4 || cols < 4 || rows % 4 || cols % 4)
      fail("E_SHAPE", "w: got [" + std::to_string(rows) + ", " + std::to_string(cols) +
                          "], expected both dimensions to be positive multiples of 4");
    require_elems(w, rows * cols, d, "w");
    Buf out = buffer_arg(info, 4, "out");
    require_elems(out, rows * cols, DType::U8, "out");
    require_disjoint(w.data, rows * cols * dtype_size(d), out.data, rows * cols, "w and out");
    cpu::transposable_mask(w.data, d, rows, cols, static_cast<uint8_t*>(out.data));
    return info.Env().Undefined();
  });
  // maskSad(a: Uint8Array, b: Uint8Array) -> number of positions whose kept state differs
  define(env, exports, "maskSad", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Buf a = buffer_arg(info, 0, "a"), b = buffer_arg(info, 1, "b");
    if (a.bytes != b.bytes)
      fail("E_SHAPE", "masks: got " + std::to_string(a.bytes) + " and " + std::to_string(b.bytes) +
                          " elements, expected the same size");
    return Napi::Number::New(info.Env(), static_cast<double>(cpu::mask_sad(static_cast<const uint8_t*>(a.data),
                                                                            static_cast<const uint8_t*>(b.data),
                                                                            static_cast<int64_t>(a.bytes))));
  });
}

}  // namespace
NMS_NAPI_FAMILY(mask, RegisterMask);
}  // namespace nms::napi
