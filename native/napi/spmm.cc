// N-API binding of the CPU N:M-sparse × dense product (native/cpu/spmm.h).
#include <string>
#include <vector>

#include "core/nm_format.h"
#include "cpu/spmm.h"
#include "napi/args.h"
#include "napi/product_args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

// The fields spmm and spmmT share: the dense operand B (p columns), the output and their layouts.
template <class Args>
void dense_and_out(Options& o, Args& s, Buf* b, Buf* out) {
  *b = o.buffer("b");
  s.b_dtype = o.dtype("bDtype");
  s.p = o.integer("p");
  *out = o.buffer("out");
  s.out_dtype = o.dtype("outDtype");
  s.trans_b = o.boolean("transB");
  s.trans_out = o.boolean("transOut");
}

// The compressed W̃ both products read: values, positions, rows, cols, n and m (validated); its dtype is the caller's.
void nm_operand(Options& o, cpu::NmMatrix& w, Buf* values, Buf* positions) {
  *values = o.buffer("values");
  *positions = o.buffer("positions");
  w.rows = o.integer("rows");
  w.cols = o.integer("cols");
  const int64_t n = o.integer("n"), m = o.integer("m");
  nm_validate(w.rows, w.cols, n, m);
  w.n = static_cast<int>(n);
  w.m = static_cast<int>(m);
}
void require_nm_operand(const cpu::NmMatrix& w, const Buf& values, const Buf& positions) {
  require_elems(values, elems(w.rows, nm_kept_per_row(w.cols, w.n, w.m), "values"), w.dtype, "values");
  require_elems(positions, elems(w.rows, nm_pos_row_bytes(w.cols, w.n, w.m), "positions"), DType::U8, "positions");
}
// A packed copy of W̃ (spmmPack): float32, its size for W̃'s shape and N:M (which must have one).
void require_packed(const cpu::NmMatrix& w, const Buf& packed, const char* name) {
  const int64_t floats = cpu::spmm_packed_floats(w.rows, w.cols, w.n, w.m);
  if (floats == 0) fail("E_PATTERN", std::string(name) + ": " + std::to_string(w.n) + ":" + std::to_string(w.m) + " has no packed form (M must be 4)");
  require_elems(packed, floats, DType::F32, name);
}

void RegisterSpmm(Napi::Env env, Napi::Object exports) {
  // spmm({values, positions, wDtype, rows, cols, n, m, b, bDtype, p, out, outDtype, transB, transOut, bias?,
  //       biasDtype (with bias), packed?, async})
  //   Y[rows, p] = W̃·op(B) (+ bias[rows] on every column), W̃ in the portable compressed form; out holds Y, or
  //   Yᵀ when transOut. nm.linear(x, S) is transB = transOut = true with b = x [p, cols]. packed: W̃ as spmmPack
  //   wrote it, read instead of values/positions where a small batch can. Returns undefined, or a Promise when async.
  define(env, exports, "spmm", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "spmm");
    cpu::SpmmArgs s{};
    Buf values, positions;
    nm_operand(o, s.w, &values, &positions);
    s.w.dtype = o.dtype("wDtype");
    Buf b, out;
    dense_and_out(o, s, &b, &out);
    Buf bias = bias_option(o, &s.bias_dtype);
    Buf packed = o.optional_buffer("packed");
    const bool async = o.boolean("async");
    o.done();

    if (s.p < 1) fail("E_SHAPE", "spmm: p: got " + std::to_string(s.p) + ", expected p >= 1");
    if (packed.data) require_packed(s.w, packed, "packed");
    for (DType d : {s.w.dtype, s.b_dtype, s.out_dtype})
      if (!is_float(d)) fail("E_DTYPE", std::string("spmm: expected float32, float16 or bfloat16, got ") + dtype_name(d));
    if (bias.data && !is_float(s.bias_dtype))
      fail("E_DTYPE", std::string("spmm: bias: expected float32, float16 or bfloat16, got ") + dtype_name(s.bias_dtype));
    require_nm_operand(s.w, values, positions);
    require_elems(b, elems(s.w.cols, s.p, "b"), s.b_dtype, "b");
    require_elems(out, elems(s.w.rows, s.p, "out"), s.out_dtype, "out");
    if (bias.data) require_elems(bias, s.w.rows, s.bias_dtype, "bias");
    require_apart(out, values, "out", "values");
    require_apart(out, positions, "out", "positions");
    require_apart(out, b, "out", "b");
    require_apart(out, bias, "out", "bias");
    require_apart(out, packed, "out", "packed");

    Holds holds(async);
    holds.input(values);
    holds.input(positions);
    holds.input(b);
    holds.input(bias);
    holds.input(packed);
    holds.output(out);
    s.w.values = values.data;
    s.w.positions = static_cast<const uint8_t*>(positions.data);
    s.b = b.data;
    s.out = out.data;
    s.bias = bias.data;
    s.w_packed = static_cast<const float*>(packed.data);
    return run(info.Env(), std::move(holds), [s] { cpu::spmm(s); });
  });
  // spmmPackedSize(rows, cols, n, m) -> the float32 values spmmPack writes for W̃ [rows, cols] (validated), 0 when
  // that N:M has no packed form (M other than 4).
  define(env, exports, "spmmPackedSize", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t rows = int_arg(info, 0, "rows"), cols = int_arg(info, 1, "cols"), n = int_arg(info, 2, "n"), m = int_arg(info, 3, "m");
    nm_validate(rows, cols, n, m);
    return Napi::Number::New(info.Env(), static_cast<double>(cpu::spmm_packed_floats(rows, cols, static_cast<int>(n), static_cast<int>(m))));
  });
  // spmmPack({values, positions, rows, cols, n, m, out}): W̃ (float32 values, M = 4) into out (float32,
  // spmmPackedSize of it), the row-interleaved copy spmm's small batches read (cpu/spmm.h). Synchronous.
  define(env, exports, "spmmPack", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "spmmPack");
    cpu::NmMatrix w{};
    Buf values, positions;
    nm_operand(o, w, &values, &positions);
    w.dtype = DType::F32;
    Buf out = o.buffer("out");
    o.done();
    if (w.m != 4) fail("E_PATTERN", "spmmPack: m: got " + std::to_string(w.m) + ", expected 4 (no packed form)");
    require_nm_operand(w, values, positions);
    require_packed(w, out, "out");
    require_apart(out, values, "out", "values");
    require_apart(out, positions, "out", "positions");
    w.values = values.data;
    w.positions = static_cast<const uint8_t*>(positions.data);
    cpu::spmm_pack(w, static_cast<float*>(out.data));
    return info.Env().Undefined();
  });
  // spmmT({values, positions, rows, cols, n, m, b, bDtype, p, out, outDtype, transB, transOut}): out = W̃ᵀ·op(B)
  // (or its transpose), W̃ float32 [rows, cols] in the portable compressed form; the training backward dX = dY·W̃
  // (cpu/spmm.h).
  define(env, exports, "spmmT", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "spmmT");
    cpu::SpmmTArgs s{};
    Buf values, positions;
    nm_operand(o, s.w, &values, &positions);
    s.w.dtype = DType::F32;
    Buf b, out;
    dense_and_out(o, s, &b, &out);
    o.done();
    if (s.p < 1) fail("E_SHAPE", "spmmT: p: got " + std::to_string(s.p) + ", expected p >= 1");
    for (DType d : {s.b_dtype, s.out_dtype})
      if (!is_float(d)) fail("E_DTYPE", std::string("spmmT: expected float32, float16 or bfloat16, got ") + dtype_name(d));
    require_nm_operand(s.w, values, positions);
    require_elems(b, elems(s.w.rows, s.p, "b"), s.b_dtype, "b");
    require_elems(out, elems(s.w.cols, s.p, "out"), s.out_dtype, "out");
    require_apart(out, values, "out", "values");
    require_apart(out, positions, "out", "positions");
    require_apart(out, b, "out", "b");
    s.w.values = values.data;
    s.w.positions = static_cast<const uint8_t*>(positions.data);
    s.b = b.data;
    s.out = out.data;
    cpu::spmm_t(s);
    return info.Env().Undefined();
  });
}

}  // namespace
NMS_NAPI_FAMILY(spmm, RegisterSpmm);
}  // namespace nms::napi
