// N-API bindings of dtype conversion and transposes (native/cpu/convert.h).
#include "cpu/convert.h"
#include "napi/args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

void RegisterConvert(Napi::Env env, Napi::Object exports) {
  // convert(src, srcDtype, dst, dstDtype, count)
  define(env, exports, "convert", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Buf src = buffer_arg(info, 0, "src");
    const DType sd = dtype_arg(info, 1, "srcDtype");
    Buf dst = buffer_arg(info, 2, "dst");
    const DType dd = dtype_arg(info, 3, "dstDtype");
    const int64_t count = int_arg(info, 4, "count");
    require_elems(src, count, sd, "src");
    require_elems(dst, count, dd, "dst");
    require_disjoint(src.data, count * dtype_size(sd), dst.data, count * dtype_size(dd), "convert: src and dst");
    cpu::convert(src.data, sd, dst.data, dd, count);
    return info.Env().Undefined();
  });
  // transpose2d(src, dtype, batch, rows, cols, dst)
  define(env, exports, "transpose2d", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Buf src = buffer_arg(info, 0, "src");
    const DType d = dtype_arg(info, 1, "dtype");
    const int64_t batch = int_arg(info, 2, "batch"), rows = int_arg(info, 3, "rows"), cols = int_arg(info, 4, "cols");
    if (batch < 0 || rows < 0 || cols < 0) fail("E_SHAPE", "transpose2d: negative size");
    Buf dst = buffer_arg(info, 5, "dst");
    require_elems(src, batch * rows * cols, d, "src");
    require_elems(dst, batch * rows * cols, d, "dst");
    const int64_t bytes = batch * rows * cols * static_cast<int64_t>(dtype_size(d));
    require_disjoint(src.data, bytes, dst.data, bytes, "transpose2d: src and dst");
    cpu::transpose2d(src.data, d, batch, rows, cols, dst.data);
    return info.Env().Undefined();
  });
}

}  // namespace
NMS_NAPI_FAMILY(convert, RegisterConvert);
}  // namespace nms::napi
