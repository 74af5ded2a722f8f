// N-API bindings of the CUDA GEMM family: sparse products through cuSPARSELt (native/cuda/spmm.cu), dense ones
// through cuBLASLt (native/cuda/gemm.cu), the plan cache's contents, and the benchmark helpers of bench/gpu.
#ifdef NMSPARSE_WITH_CUDA
#include "cuda/bench.h"
#include "cuda/ops.h"
#include "napi/args.h"
#include "napi/cuda_handles.h"
#include "napi/registry.h"

namespace nms::napi {
namespace {

// The epilogue of a product: options.activation (a code, lib/gemm.ts ACTIVATIONS; absent: none) and the bias,
// an optional CudaBuffer of `count` elements of `d`.
cuda::Act act_option(Options& o) {
  if (!o.given("activation")) return cuda::Act::None;
  const int64_t a = o.integer("activation");
  if (a < 0 || a >= kNumActs)
    fail("E_VALUE", o.where("activation") + ": got " + std::to_string(a) + ", expected 0 (none), 1 (relu) or 2 (gelu)");
  return static_cast<cuda::Act>(a);
}

const void* bias_option(Options& o, int64_t count, DType d) {
  if (!o.given("bias")) return nullptr;
  CudaBuffer* b = CudaBuffer::From(o.get("bias"), o.where("bias"));
  b->require(count, d, o.where("bias").c_str());
  return b->ptr();
}

// cudaSparseLinear / cudaSparseMatmul: Y = x · W̃ᵀ [p, rows] (linear, dense operand options.x [p, cols]) or
// W̃ · b [rows, p] (options.b [cols, p]), with options {sparse, p, bias?, activation?, outDtype, out?}.
Napi::Value sparse_gemm_call(const Napi::CallbackInfo& info, bool linear) {
  const char* fn = linear ? "cudaSparseLinear" : "cudaSparseMatmul";
  const char* operand = linear ? "x" : "b";
  Options o(info, 0, fn);
  CudaSparse* h = CudaSparse::From(o.get("sparse"), o.where("sparse"));
  cuda::SparseMatrix& s = *h->matrix();
  CudaBuffer* dense = CudaBuffer::From(o.get(operand), o.where(operand));
  const int64_t p = o.integer("p");
  if (p < 1) fail("E_SHAPE", o.where("p") + ": got " + std::to_string(p) + ", expected at least 1");
  dense->require(p * s.cols, s.dtype, o.where(operand).c_str());
  cuda::SparseGemm g{};
  g.s = &s;
  g.b = dense->ptr();
  g.p = p;
  g.linear = linear;
  g.out_dtype = o.dtype("outDtype");
  g.bias = bias_option(o, s.rows, s.dtype == DType::I8 ? DType::F32 : s.dtype);
  g.act = act_option(o);
  CudaBuffer* out;
  Napi::Object result = out_value(info.Env(), o.get("out"), o.where("out"), p * s.rows, g.out_dtype, &out);
  o.done();
  g.out = out->ptr();
  cuda::sparse_gemm(g);
  h->Resync(info.Env());
  return result;
}

// Optional bias CudaBuffer (positional argument i) of `count` elements of `d` (null/undefined: none).
const void* bias_arg(const Napi::CallbackInfo& info, size_t i, int64_t count, DType d) {
  if (info[i].IsUndefined() || info[i].IsNull()) return nullptr;
  CudaBuffer* b = CudaBuffer::Arg(info, i, "bias");
  b->require(count, d, "bias");
  return b->ptr();
}

Napi::Object plan_object(Napi::Env env, const cuda::PlanInfo& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("key", p.key);
  o.Set("path", p.path);
  if (!p.reason.empty()) o.Set("reason", p.reason);
  o.Set("algId", p.alg_id);
  o.Set("maxAlgId", p.max_alg_id);
  o.Set("splitK", p.split_k);
  o.Set("splitKMode", p.split_k_mode);
  o.Set("searched", p.searched);
  o.Set("verified", p.verified);
  o.Set("sparseMs", p.sparse_ms >= 0 ? Napi::Value(Napi::Number::New(env, p.sparse_ms)) : env.Null());
  o.Set("denseMs", p.dense_ms >= 0 ? Napi::Value(Napi::Number::New(env, p.dense_ms)) : env.Null());
  o.Set("workspaceBytes", static_cast<double>(p.workspace));
  return o;
}

void RegisterCudaGemm(Napi::Env env, Napi::Object exports) {
  // cudaSparseLinear({x, p, sparse, bias?, activation?, outDtype, out?}) -> Y [p, rows] = x [p, cols] · W̃ᵀ (+ bias)
  define(env, exports, "cudaSparseLinear", [](const Napi::CallbackInfo& info) { return sparse_gemm_call(info, true); });
  // cudaSparseMatmul({sparse, b, p, bias?, activation?, outDtype, out?}) -> Y [rows, p] = W̃ · b [cols, p] (+ bias[rows])
  define(env, exports, "cudaSparseMatmul", [](const Napi::CallbackInfo& info) { return sparse_gemm_call(info, false); });
  // cudaMatmul({a, b, dtype, m, n, k, transA, transB, bias?, activation?, outDtype, out?})
  //   -> C [m, n] = op(A) · op(B) (+ bias[n] on every row) through cuBLASLt
  define(env, exports, "cudaMatmul", [](const Napi::CallbackInfo& info) -> Napi::Value {
    Options o(info, 0, "cudaMatmul");
    CudaBuffer* a = CudaBuffer::From(o.get("a"), o.where("a"));
    CudaBuffer* b = CudaBuffer::From(o.get("b"), o.where("b"));
    cuda::DenseGemm g{};
    g.dtype = o.dtype("dtype");
    g.m = o.integer("m");
    g.n = o.integer("n");
    g.k = o.integer("k");
    if (g.m < 1 || g.n < 1 || g.k < 1) fail("E_SHAPE", "cudaMatmul: sizes must be m, n, k >= 1");
    a->require(g.m * g.k, g.dtype, o.where("a").c_str());
    b->require(g.k * g.n, g.dtype, o.where("b").c_str());
    g.a = a->ptr();
    g.b = b->ptr();
    g.trans_a = o.boolean("transA");
    g.trans_b = o.boolean("transB");
    g.bias = bias_option(o, g.n, g.dtype == DType::I8 ? DType::F32 : g.dtype);
    g.act = act_option(o);
    g.out_dtype = o.dtype("outDtype");
    CudaBuffer* out;
    Napi::Object result = out_value(info.Env(), o.get("out"), o.where("out"), g.m * g.n, g.out_dtype, &out);
    o.done();
    g.c = out->ptr();
    cuda::dense_gemm(g);
    return result;
  });
  // cudaPlanInfo() -> one plan_object() per cached key (lib/cuda.ts PlanInfo)
  define(env, exports, "cudaPlanInfo", [](const Napi::CallbackInfo& info) -> Napi::Value {
    const std::vector<cuda::PlanInfo> v = cuda::plan_info();
    Napi::Array a = Napi::Array::New(info.Env(), v.size());
    for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), plan_object(info.Env(), v[i]));
    return a;
  });
  define(env, exports, "cudaClearPlans", [](const Napi::CallbackInfo& info) -> Napi::Value {
    cuda::clear_plans();
    return info.Env().Undefined();
  });
  // cudaBenchNativeLoop(sparse, x, p, bias?, iters) -> {path, msPerCallGpu, usPerCallHost, iters}: the plan that
  // nm.linear uses for this shape, driven by a plain C++ loop of cusparseLtMatmul calls.
  define(env, exports, "cudaBenchNativeLoop", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaSparse* h = CudaSparse::Arg(info, 0, "sparse");
    cuda::SparseMatrix& s = *h->matrix();
    CudaBuffer* x = CudaBuffer::Arg(info, 1, "x");
    const int64_t p = int_arg(info, 2, "p");
    x->require(p * s.cols, s.dtype, "x");
    const int64_t iters = int_arg(info, 4, "iters");
    if (iters < 1 || iters > 1000000) fail("E_VALUE", "iters: expected 1 ... 1e6");
    const DType out_dtype = s.dtype == DType::I8 ? DType::F32 : s.dtype;
    cuda::DevPtr out = cuda::alloc(static_cast<size_t>(p * s.rows) * dtype_size(out_dtype));
    cuda::SparseGemm g{};
    g.s = &s;
    g.b = x->ptr();
    g.p = p;
    g.linear = true;
    g.out_dtype = out_dtype;
    g.bias = bias_arg(info, 3, s.rows, s.dtype == DType::I8 ? DType::F32 : s.dtype);
    g.out = out->ptr();
    const cuda::NativeLoopResult r = cuda::bench_native_loop(g, static_cast<int>(iters));
    h->Resync(info.Env());
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("path", r.path);
    o.Set("iters", r.iters);
    o.Set("msPerCallGpu", r.ms_per_call_gpu);
    o.Set("usPerCallHost", r.us_per_call_host);
    return o;
  });
  // cudaBenchGemm({dtype, m, n, k, warmup?, iters?, search?}) -> sparse vs cuBLASLt dense on synthetic data, in the
  // Linear layout (Y[n, m] = X[n, k] · W[m, k]ᵀ); dtype may also be 'e4m3'. Plus prune / compress / copy timings.
  define(env, exports, "cudaBenchGemm", [](const Napi::CallbackInfo& info) -> Napi::Value {
    if (!info[0].IsObject()) fail("E_TYPE", "cudaBenchGemm(options): expected an object");
    Napi::Object opt = info[0].As<Napi::Object>();
    auto num = [&](const char* k, double dflt) {
      Napi::Value v = opt.Get(k);
      return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
    };
    cuda::GemmBench b;
    Napi::Value dt = opt.Get("dtype");
    b.dtype = dt.IsString() ? dt.As<Napi::String>().Utf8Value() : "float16";
    b.m = static_cast<int64_t>(num("m", 4096));
    b.n = static_cast<int64_t>(num("n", 4096));
    b.k = static_cast<int64_t>(num("k", 4096));
    b.warmup = static_cast<int>(num("warmup", 5));
    b.iters = static_cast<int>(num("iters", 20));
    Napi::Value se = opt.Get("search");
    b.search = se.IsBoolean() ? se.As<Napi::Boolean>().Value() : true;
    if (b.m < 1 || b.n < 1 || b.k < 1 || b.iters < 1 || b.warmup < 0) fail("E_VALUE", "cudaBenchGemm: bad sizes");
    const cuda::GemmBenchResult r = cuda::bench_gemm(b);
    Napi::Env env = info.Env();
    auto ms = [&](double v) { return v >= 0 ? Napi::Value(Napi::Number::New(env, v)) : env.Null(); };
    Napi::Object o = Napi::Object::New(env);
    o.Set("sparseMs", ms(r.sparse_ms));
    o.Set("denseMs", ms(r.dense_ms));
    if (!r.sparse_error.empty()) o.Set("sparseError", r.sparse_error);
    if (!r.dense_error.empty()) o.Set("denseError", r.dense_error);
    o.Set("algId", r.alg_id);
    o.Set("splitK", r.split_k);
    o.Set("maxRelErr", ms(r.max_rel_err));
    o.Set("pruneMs", ms(r.prune_ms));
    o.Set("compressMs", ms(r.compress_ms));
    o.Set("copyMs", ms(r.copy_ms));
    o.Set("weightBytes", static_cast<double>(r.weight_bytes));
    o.Set("denseHeuristic", r.dense_heuristic);
    o.Set("denseHeuristics", r.dense_heuristics);
    o.Set("batch", r.batch);
    o.Set("rounds", r.rounds);
    return o;
  });
}

}  // namespace
NMS_NAPI_FAMILY(cuda_gemm, RegisterCudaGemm);
}  // namespace nms::napi
#endif  // NMSPARSE_WITH_CUDA
