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

cuda::Act act_arg(const Napi::CallbackInfo& info, size_t i) {
  if (info[i].IsUndefined() || info[i].IsNull()) return cuda::Act::None;
  const int64_t a = int_arg(info, i, "activation");
  if (a < 0 || a >= kNumActs) fail("E_VALUE", "activation: got " + std::to_string(a) + ", expected 0 (none), 1 (relu) or 2 (gelu)");
  return static_cast<cuda::Act>(a);
}

// Optional bias CudaBuffer of `count` elements of `d` (null/undefined: none).
const void* bias_arg(const Napi::CallbackInfo& info, size_t i, int64_t count, DType d) {
  if (info[i].IsUndefined() || info[i].IsNull()) return nullptr;
  CudaBuffer* b = CudaBuffer::Arg(info, i, "bias");
  b->require(count, d, "bias");
  return b->ptr();
}

// The shared tail of cudaSparseLinear and cudaSparseMatmul, whose arguments 3-6 are (bias?, activation,
// outDtype, out?): Y = x · W̃ᵀ [p, rows] (linear) or W̃ · b [rows, p], from the already checked dense operand.
Napi::Value sparse_gemm_call(const Napi::CallbackInfo& info, CudaSparse* h, const void* dense, int64_t p, bool linear) {
  cuda::SparseMatrix& s = *h->matrix();
  const DType out_dtype = dtype_arg(info, 5, "outDtype");
  cuda::SparseGemm g{};
  g.s = &s;
  g.b = dense;
  g.p = p;
  g.linear = linear;
  g.out_dtype = out_dtype;
  g.bias = bias_arg(info, 3, s.rows, s.dtype == DType::I8 ? DType::F32 : s.dtype);
  g.act = act_arg(info, 4);
  CudaBuffer* out;
  Napi::Object o = out_arg(info, 6, p * s.rows, out_dtype, &out);
  g.out = out->ptr();
  cuda::sparse_gemm(g);
  h->Resync(info.Env());
  return o;
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
  // cudaSparseLinear(x, p, sparse, bias?, activation, outDtype, out?) -> Y [p, rows] = x [p, cols] · W̃ᵀ (+ bias)
  define(env, exports, "cudaSparseLinear", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaBuffer* x = CudaBuffer::Arg(info, 0, "x");
    const int64_t p = int_arg(info, 1, "p");
    CudaSparse* h = CudaSparse::Arg(info, 2, "sparse");
    cuda::SparseMatrix& s = *h->matrix();
    if (p < 1) fail("E_SHAPE", "x: got " + std::to_string(p) + " rows, expected at least 1");
    x->require(p * s.cols, s.dtype, "x");
    return sparse_gemm_call(info, h, x->ptr(), p, true);
  });
  // cudaSparseMatmul(sparse, b, p, bias?, activation, outDtype, out?) -> Y [rows, p] = W̃ · b [cols, p] (+ bias[rows])
  define(env, exports, "cudaSparseMatmul", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaSparse* h = CudaSparse::Arg(info, 0, "sparse");
    cuda::SparseMatrix& s = *h->matrix();
    CudaBuffer* b = CudaBuffer::Arg(info, 1, "b");
    const int64_t p = int_arg(info, 2, "p");
    if (p < 1) fail("E_SHAPE", "b: got " + std::to_string(p) + " columns, expected at least 1");
    b->require(p * s.cols, s.dtype, "b");
    return sparse_gemm_call(info, h, b->ptr(), p, false);
  });
  // cudaMatmul(a, b, dtype, m, n, k, transA, transB, bias?, biasPerRow, activation, outDtype, tf32, out?)
  //   -> C [m, n] = op(A) · op(B) (+ bias[n] per row, or bias[m] per column when biasPerRow) through cuBLASLt
  define(env, exports, "cudaMatmul", [](const Napi::CallbackInfo& info) -> Napi::Value {
    CudaBuffer* a = CudaBuffer::Arg(info, 0, "a");
    CudaBuffer* b = CudaBuffer::Arg(info, 1, "b");
    const DType d = dtype_arg(info, 2, "dtype");
    const int64_t m = int_arg(info, 3, "m"), n = int_arg(info, 4, "n"), k = int_arg(info, 5, "k");
    if (m < 1 || n < 1 || k < 0) fail("E_SHAPE", "matmul: sizes must be m, n >= 1 and k >= 0");
    a->require(m * k, d, "a");
    b->require(k * n, d, "b");
    const bool bias_per_row = bool_arg(info, 9, "biasPerRow");
    const DType out_dtype = dtype_arg(info, 11, "outDtype");
    cuda::DenseGemm g{};
    g.a = a->ptr();
    g.b = b->ptr();
    g.dtype = d;
    g.out_dtype = out_dtype;
    g.m = m;
    g.n = n;
    g.k = k;
    g.trans_a = bool_arg(info, 6, "transA");
    g.trans_b = bool_arg(info, 7, "transB");
    g.bias = bias_arg(info, 8, bias_per_row ? m : n, d == DType::I8 ? DType::F32 : d);
    g.bias_per_row = bias_per_row;
    g.act = act_arg(info, 10);
    g.tf32 = bool_arg(info, 12, "tf32");
    CudaBuffer* out;
    Napi::Object o = out_arg(info, 13, m * n, out_dtype, &out);
    g.c = out->ptr();
    cuda::dense_gemm(g);
    return o;
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
