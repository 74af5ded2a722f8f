// N-API bindings of the portable compressed N:M form (native/cpu/compress.h).
#include "core/nm_format.h"
#include "cpu/compress.h"
#include "napi/args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

struct Shape { DType d; int64_t rows, cols; int n, m; };

// The shape fields {dtype, rows, cols, n, m} of an options object.
Shape shape_option(Options& o) {
  Shape s{o.dtype("dtype"), o.integer("rows"), o.integer("cols"), 0, 0};
  const int64_t n = o.integer("n"), m = o.integer("m");
  nm_validate(s.rows, s.cols, n, m);
  s.n = static_cast<int>(n);
  s.m = static_cast<int>(m);
  return s;
}

// Sizes, and values apart from positions; `dense` (the other side of the op) apart from both.
void check_compressed(const Shape& s, const Buf& values, const Buf& positions, const Buf& dense, const char* dense_name) {
  const int64_t nv = s.rows * nm_kept_per_row(s.cols, s.n, s.m), np = s.rows * nm_pos_row_bytes(s.cols, s.n, s.m);
  require_elems(values, nv, s.d, "values");
  require_elems(positions, np, DType::U8, "positions");
  require_elems(dense, s.rows * s.cols, s.d, dense_name);
  const int64_t vb = nv * dtype_size(s.d), db = s.rows * s.cols * dtype_size(s.d);
  require_disjoint(values.data, vb, positions.data, np, "values and positions");
  require_disjoint(dense.data, db, values.data, vb, (std::string(dense_name) + " and values").c_str());
  require_disjoint(dense.data, db, positions.data, np, (std::string(dense_name) + " and positions").c_str());
}

void RegisterCompress(Napi::Env env, Napi::Object exports) {
  // nmPositionBytes(rows, cols, n, m) -> bytes of the packed positions
  define(env, exports, "nmPositionBytes", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = int_arg(info, 0, "rows"), cols = int_arg(info, 1, "cols");
    const int64_t n = int_arg(info, 2, "n"), m = int_arg(info, 3, "m");
    nm_validate(rows, cols, n, m);
    return Napi::Number::New(info.Env(), static_cast<double>(rows * nm_pos_row_bytes(cols, static_cast<int>(n), static_cast<int>(m))));
  });
  // nmCompress({w, dtype, rows, cols, n, m, values, positions})
  define(env, exports, "nmCompress", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "nmCompress");
    Buf w = o.buffer("w");
    Shape s = shape_option(o);
    Buf values = o.buffer("values"), positions = o.buffer("positions");
    o.done();
    check_compressed(s, values, positions, w, "w");
    cpu::nm_compress(w.data, s.d, s.rows, s.cols, s.n, s.m, values.data, static_cast<uint8_t*>(positions.data));
    return info.Env().Undefined();
  });
  // nmDecompress({values, positions, dtype, rows, cols, n, m, out})
  define(env, exports, "nmDecompress", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "nmDecompress");
    Buf values = o.buffer("values"), positions = o.buffer("positions");
    Shape s = shape_option(o);
    Buf out = o.buffer("out");
    o.done();
    check_compressed(s, values, positions, out, "out");
    cpu::nm_decompress(values.data, static_cast<const uint8_t*>(positions.data), s.d, s.rows, s.cols, s.n, s.m, out.data);
    return info.Env().Undefined();
  });
}

}  // namespace
NMS_NAPI_FAMILY(compress, RegisterCompress);
}  // namespace nms::napi
