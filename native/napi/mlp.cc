// N-API bindings of the whole-forward MLP call (native/cpu/mlp.h): a plan made once from the layers' buffers, then
// one call per forward with only the input and the output to read.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/nm_format.h"
#include "cpu/gemm.h"
#include "cpu/mlp.h"
#include "cpu/simd.h"
#include "cpu/spmm.h"
#include "napi/args.h"
#include "napi/product_args.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

// The layers and the memory they point into: each buffer's native Block when it lies in one (so that it outlives
// whatever JavaScript does to the ArrayBuffer, as an async op's pin does), else a copy made with the plan.
struct Plan {
  std::vector<cpu::MlpLayer> layers;
  std::vector<std::shared_ptr<void>> pins;
  const void* hold(const Buf& b) {
    if (std::shared_ptr<void> pin = pin_block(b.data, b.bytes)) {
      pins.push_back(pin);
      return b.data;
    }
    std::shared_ptr<void> copy(std::malloc(b.bytes == 0 ? 1 : b.bytes), std::free);
    if (!copy) fail("E_OOM", "mlpPlan: cannot allocate " + std::to_string(b.bytes) + " bytes to copy a layer's buffer");
    std::memcpy(copy.get(), b.data, b.bytes);
    pins.push_back(copy);
    return copy.get();
  }
};

// The tag of a plan's External: napi_type_tag_object marks it in mlpPlan, and mlpForward casts only what carries it,
// so no other External (another addon's: any N-API module can make one) is read as a Plan. The upper half is the
// tag's own address: a plan from another copy of this addon (a prebuild beside a local build, two versions in
// node_modules) has that copy's Plan layout and deleter, so it is another type here too.
const napi_type_tag* plan_tag() {
  static const napi_type_tag tag{0x6e6d7370617273ULL /* "nmspars" */, reinterpret_cast<uintptr_t>(&tag)};
  return &tag;
}

// What a value is, for the error that rejects it as a plan.
std::string kind_of(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_function: return "a function";
    case napi_external: return "an External";
    case napi_bigint: return "a bigint";
    default: return "an object";
  }
}

// The plan's External (it owns the Plan), checked by its tag.
Napi::External<Plan> plan_arg(const Napi::CallbackInfo& info, size_t i) {
  const std::string at = "mlpForward: plan (argument " + std::to_string(i) + "): expected a plan from mlpPlan, got ";
  const Napi::Value v = info[i];
  if (!v.IsObject()) fail("E_TYPE", at + kind_of(v));
  const Napi::Value e = v.As<Napi::Object>().Get("handle");
  if (!e.IsExternal()) fail("E_TYPE", at + "an object whose handle is " + kind_of(e));
  const auto plan = e.As<Napi::External<Plan>>();
  if (!plan.CheckTypeTag(plan_tag()))
    fail("E_TYPE", at + "an object whose handle is an External that this addon's mlpPlan did not make (another "
                        "addon's, or another copy of this one's)");
  return plan;
}

void RegisterMlp(Napi::Env env, Napi::Object exports) {
  // mlpPlan({layers: [layer, …]}) -> {handle, inFeatures, outFeatures}: float32 Linear layers, W [n, k], layer i's
  //   k = layer i-1's n. A dense layer is {w, packed?, packedIsa (with packed), bias?, n, k, relu} (packed: W from
  //   gemmPackB); an N:M-sparse one {values, positions, nmN, nmM, packed?, bias?, n, k, relu}, what spmm reads for
  //   nm.linear (values float32; packed: W̃ from spmmPack).
  define(env, exports, "mlpPlan", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "mlpPlan");
    const Napi::Value lv = o.get("layers");
    o.done();
    if (!lv.IsArray() || lv.As<Napi::Array>().Length() == 0)
      fail("E_TYPE", "mlpPlan: options.layers: expected a non-empty array of layers");
    const Napi::Array arr = lv.As<Napi::Array>();
    auto plan = std::make_unique<Plan>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      const std::string path = "options.layers[" + std::to_string(i) + "]";
      Options l(arr.Get(i), "mlpPlan", path);
      cpu::MlpLayer L{};
      const bool sparse = l.given("positions");
      Buf w = l.buffer(sparse ? "values" : "w");
      Buf positions = sparse ? l.buffer("positions") : Buf{};
      int64_t nm_n = 0, nm_m = 0;
      if (sparse) nm_n = l.integer("nmN"), nm_m = l.integer("nmM");
      Buf packed = l.optional_buffer("packed");
      if (packed.data && !sparse) L.packed_isa = static_cast<int>(l.integer("packedIsa"));
      Buf bias = l.optional_buffer("bias");
      L.n = l.integer("n");
      L.k = l.integer("k");
      L.relu = l.boolean("relu");
      l.done();
      const std::string at = "mlpPlan: " + path;
      if (L.n < 1 || L.k < 1)
        fail("E_SHAPE", at + ": expected n, k >= 1, got n=" + std::to_string(L.n) + " k=" + std::to_string(L.k));
      if (i > 0 && L.k != plan->layers.back().n)
        fail("E_SHAPE", at + ".k: got " + std::to_string(L.k) + ", expected " + std::to_string(plan->layers.back().n) +
                            " (the previous layer's n)");
      if (bias.data) require_elems(bias, L.n, DType::F32, (at + ".bias").c_str());
      if (sparse) {
        if (!nm_supported_m(nm_m) || nm_n < 1 || nm_n >= nm_m)
          fail("E_PATTERN", at + ".nmN, nmM: got " + std::to_string(nm_n) + ":" + std::to_string(nm_m) +
                                ", expected 1 <= n < m with m one of 4, 8, 16, 32");
        if (L.k % nm_m != 0)
          fail("E_SHAPE", at + ".k: got " + std::to_string(L.k) + ", expected a multiple of m = " + std::to_string(nm_m));
        L.nm_n = static_cast<int>(nm_n);
        L.nm_m = static_cast<int>(nm_m);
        require_elems(w, elems(L.n, nm_kept_per_row(L.k, L.nm_n, L.nm_m), (path + ".values").c_str()), DType::F32,
                      (at + ".values").c_str());
        require_elems(positions, elems(L.n, nm_pos_row_bytes(L.k, L.nm_n, L.nm_m), (path + ".positions").c_str()),
                      DType::U8, (at + ".positions").c_str());
        if (packed.data) {
          const int64_t floats = cpu::spmm_packed_floats(L.n, L.k, L.nm_n, L.nm_m);
          if (floats == 0)
            fail("E_PATTERN", at + ".packed: " + std::to_string(nm_n) + ":" + std::to_string(nm_m) +
                                  " has no packed form (M must be 4)");
          require_elems(packed, floats, DType::F32, (at + ".packed").c_str());
        }
        L.positions = static_cast<const uint8_t*>(plan->hold(positions));
      } else {
        require_elems(w, elems(L.n, L.k, (path + ".w").c_str()), DType::F32, (at + ".w").c_str());
        if (packed.data) {
          if (L.packed_isa < 0 || L.packed_isa > static_cast<int>(cpu::Isa::Avx512))
            fail("E_VALUE", at + ".packedIsa: got " + std::to_string(L.packed_isa) + ", expected an ISA code 0-2");
          require_elems(packed, cpu::packed_b_floats(L.packed_isa, L.n, L.k), DType::F32, (at + ".packed").c_str());
        }
      }
      L.w = static_cast<const float*>(plan->hold(w));
      L.packed = packed.data ? static_cast<const float*>(plan->hold(packed)) : nullptr;
      L.bias = bias.data ? static_cast<const float*>(plan->hold(bias)) : nullptr;
      plan->layers.push_back(L);
    }
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("inFeatures", static_cast<double>(plan->layers.front().k));
    r.Set("outFeatures", static_cast<double>(plan->layers.back().n));
    auto handle = Napi::External<Plan>::New(info.Env(), plan.release(), [](Napi::Env, Plan* p) { delete p; });
    handle.TypeTag(plan_tag());
    r.Set("handle", handle);
    return r;
  });

  // mlpForward(plan, first, last, x, m, out, async): out [m, n of layer last-1] = the plan's layers [first, last)
  // on x [m, k of layer first], float32. Returns undefined, or a Promise when async (the plan stays alive until it
  // settles). Positional, unlike the other products' options objects: reading those by name is the per-layer cost
  // this call exists to avoid, and only the input and the output change from call to call.
  define(env, exports, "mlpForward", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const Napi::External<Plan> handle = plan_arg(info, 0);
    Plan* plan = handle.Data();
    const int64_t first = int_arg(info, 1, "first"), last = int_arg(info, 2, "last");
    Buf x = buffer_arg(info, 3, "x");
    const int64_t m = int_arg(info, 4, "m");
    Buf out = buffer_arg(info, 5, "out");
    const bool async = bool_arg(info, 6, "async");
    const int64_t count = static_cast<int64_t>(plan->layers.size());
    if (first < 0 || last <= first || last > count)
      fail("E_VALUE", "mlpForward: first, last: got " + std::to_string(first) + ", " + std::to_string(last) +
                          ", expected 0 <= first < last <= " + std::to_string(count) + " (the plan's layers)");
    if (m < 1) fail("E_SHAPE", "mlpForward: m: got " + std::to_string(m) + ", expected m >= 1");
    require_elems(x, elems(m, plan->layers[first].k, "x"), DType::F32, "x");
    require_elems(out, elems(m, plan->layers[last - 1].n, "out"), DType::F32, "out");
    require_apart(out, x, "out", "x");
    Holds holds(async);
    // The External itself, not the object holding it: that one's handle may be replaced while the op runs.
    holds.keep(handle.As<Napi::Object>());
    holds.input(x);
    holds.output(out);
    const float* xp = static_cast<const float*>(x.data);
    float* op = static_cast<float*>(out.data);
    const size_t f = static_cast<size_t>(first), l = static_cast<size_t>(last);
    return run(info.Env(), std::move(holds), [plan, f, l, xp, m, op] { cpu::mlp_forward(plan->layers, f, l, xp, m, op); });
  });
}

}  // namespace
NMS_NAPI_FAMILY(mlp, RegisterMlp);
}  // namespace nms::napi
