// N-API bindings of the CPU dense GEMM (native/cpu/gemm.h), and of the CPU kernel ISA choice shared with spmm.
#include <string>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/simd.h"
#include "napi/args.h"
#include "napi/product_args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

// A packed op(B) [k, n] for ISA code `isa`: a known ISA, and the floats it takes for that ISA.
void require_packed(const Buf& p, int64_t n, int64_t k, int isa, const char* name) {
  if (isa < 0 || isa > static_cast<int>(cpu::Isa::Avx512))
    fail("E_VALUE", std::string(name) + ": packedIsa: got " + std::to_string(isa) + ", expected an ISA code 0-2");
  require_elems(p, cpu::packed_b_floats(isa, n, k), DType::F32, name);
}

void RegisterGemm(Napi::Env env, Napi::Object exports) {
  // gemm({a, aDtype, b, bDtype, c, cDtype, m, n, k, transA, transB, bias?, biasDtype (with bias), packed?,
  //       packedIsa (with packed), relu?, async})
  //   C[m,n] = op(A)·op(B) (+ bias[n]), then max(0, ·) when relu; float32 math. packed: op(B) from gemmPackB for ISA packedIsa, used in place
  //   of packing b when that ISA is still the active one. Returns undefined, or a Promise when async.
  define(env, exports, "gemm", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "gemm");
    Buf a = o.buffer("a");
    cpu::GemmArgs g{};
    g.a_dtype = o.dtype("aDtype");
    Buf b = o.buffer("b");
    g.b_dtype = o.dtype("bDtype");
    Buf c = o.buffer("c");
    g.c_dtype = o.dtype("cDtype");
    g.m = o.integer("m");
    g.n = o.integer("n");
    g.k = o.integer("k");
    g.trans_a = o.boolean("transA");
    g.trans_b = o.boolean("transB");
    Buf bias = bias_option(o, &g.bias_dtype);
    Buf packed = o.optional_buffer("packed");
    if (packed.data) g.b_packed_isa = static_cast<int>(o.integer("packedIsa"));
    g.relu = o.given("relu") && o.boolean("relu");
    const bool async = o.boolean("async");
    o.done();
    if (g.m < 1 || g.n < 1 || g.k < 1)
      fail("E_SHAPE", "gemm: expected m, n, k >= 1, got m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) +
                          " k=" + std::to_string(g.k));
    for (DType d : {g.a_dtype, g.b_dtype, g.c_dtype})
      if (!is_float(d)) fail("E_DTYPE", std::string("gemm: expected float32, float16 or bfloat16, got ") + dtype_name(d));
    if (bias.data && !is_float(g.bias_dtype))
      fail("E_DTYPE", std::string("gemm: bias: expected float32, float16 or bfloat16, got ") + dtype_name(g.bias_dtype));
    require_elems(a, elems(g.m, g.k, "a"), g.a_dtype, "a");
    require_elems(b, elems(g.k, g.n, "b"), g.b_dtype, "b");
    require_elems(c, elems(g.m, g.n, "c"), g.c_dtype, "c");
    if (bias.data) require_elems(bias, g.n, g.bias_dtype, "bias");
    if (packed.data) require_packed(packed, g.n, g.k, g.b_packed_isa, "packed");
    require_apart(c, a, "c", "a");
    require_apart(c, b, "c", "b");
    require_apart(c, bias, "c", "bias");
    require_apart(c, packed, "c", "packed");
    g.b_packed = static_cast<const float*>(packed.data);
    // An async product that reads only the packed copy neither holds nor copies the weight itself.
    const bool packed_only = async && packed.data && cpu::gemm_packed_only(g);
    Holds holds(async);
    holds.input(a);
    if (!packed_only) holds.input(b);
    holds.input(bias);
    holds.input(packed);
    holds.output(c);
    g.a = a.data;
    g.b = packed_only ? nullptr : b.data;
    g.c = c.data;
    g.bias = bias.data;
    return run(info.Env(), std::move(holds), [g] { cpu::gemm(g); });
  });

  // gemmPackedSize(n, k) -> {floats, isa}: the float32 values gemmPackB writes for op(B) [k, n], for the active
  // ISA (its code: an int, cpu::Isa).
  define(env, exports, "gemmPackedSize", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const int64_t n = int_arg(info, 0, "n"), k = int_arg(info, 1, "k");
    if (n < 1 || k < 1) fail("E_SHAPE", "gemmPackedSize: expected n, k >= 1, got n=" + std::to_string(n) + " k=" + std::to_string(k));
    const int isa = static_cast<int>(cpu::active_isa());
    const int64_t floats = cpu::packed_b_floats(isa, n, k);
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("floats", static_cast<double>(floats));
    r.Set("isa", isa);
    return r;
  });

  // gemmPackB({b, bDtype, n, k, transB, out, isa}): packs op(B) [k, n] into out (float32, gemmPackedSize of it)
  // for the active ISA, which must still be `isa` (the one the size was asked for). Synchronous.
  define(env, exports, "gemmPackB", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "gemmPackB");
    Buf b = o.buffer("b");
    const DType bd = o.dtype("bDtype");
    const int64_t n = o.integer("n"), k = o.integer("k");
    const bool trans_b = o.boolean("transB");
    Buf out = o.buffer("out");
    const int isa = static_cast<int>(o.integer("isa"));
    o.done();
    if (n < 1 || k < 1) fail("E_SHAPE", "gemmPackB: expected n, k >= 1, got n=" + std::to_string(n) + " k=" + std::to_string(k));
    if (!is_float(bd)) fail("E_DTYPE", std::string("gemmPackB: b: expected float32, float16 or bfloat16, got ") + dtype_name(bd));
    require_elems(b, elems(k, n, "b"), bd, "b");
    if (isa != static_cast<int>(cpu::active_isa()))
      fail("E_VALUE", "gemmPackB: isa: got " + std::to_string(isa) + ", but the active ISA is " + cpu::isa_name(cpu::active_isa()));
    require_packed(out, n, k, isa, "out");
    require_apart(out, b, "out", "b");
    cpu::gemm_pack_b(b.data, bd, n, k, trans_b, static_cast<float*>(out.data));
    return info.Env().Undefined();
  });

  // cpuIsa() -> the ISA the CPU GEMM/SpMM kernels use; cpuIsa(name) selects one ("avx512", "avx2", "scalar",
  // or "auto" for the best this CPU runs) and returns it. For tests (every path gives the same results within
  // float tolerance) and benchmarks; NMSPARSE_CPU_ISA sets the starting choice.
  define(env, exports, "cpuIsa", [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      if (!info[0].IsString()) fail("E_TYPE", "cpuIsa(name): expected a string");
      const std::string name = info[0].As<Napi::String>().Utf8Value();
      cpu::Isa isa;
      if (name == "auto") isa = cpu::best_isa();
      else if (!cpu::parse_isa(name.c_str(), &isa))
        fail("E_VALUE", "cpuIsa(name): got \"" + name + "\", expected \"auto\", \"avx512\", \"avx2\" or \"scalar\"");
      cpu::set_isa(isa);
    }
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("active", cpu::isa_name(cpu::active_isa()));
    o.Set("best", cpu::isa_name(cpu::best_isa()));
    return o;
  });
}

}  // namespace
NMS_NAPI_FAMILY(gemm, RegisterGemm);
}  // namespace nms::napi
