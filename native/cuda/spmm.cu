// N:M-sparse × dense products on the GPU through cuSPARSELt: nm.linear(x, S) and S.matmul(B) for cuda
// SparseTensors. The CUDA twin of native/cpu/spmm.cc.
//
// Layouts (../shared/reference/cusparselt.md §8). The weight W̃ [rows, cols] is the structured operand A (row
// major, op N), so its 2:4 groups run along K as cuSPARSELt requires.
//   linear  Y[p, rows] = X[p, cols] · W̃ᵀ : B = X described as [p, cols] row-major with op T (K contiguous, as the
//           8-bit kernels require), D column-major [rows, p], which in memory is exactly row-major Y.
//   matmul  Y[rows, p] = W̃ · B[cols, p]  : B row-major with op N, D row-major (int8: B is transposed first).
// Shapes cuSPARSELt cannot take are padded with zeros (exact): rows/cols of W̃ at compression time, p per call.
//
// Plans are cached per (kind, dtype, padded shape, fused epilogue). The first call of a key builds the plan, runs
// cusparseLtMatmulSearch once, checks the winner against a float64 reference computed from the pruned weight
// (some algorithm IDs have returned wrong results: pytorch#155333), falls back to the default algorithm if it
// fails, then times the sparse plan against cuBLASLt on the same pruned weight and keeps the faster path for that
// key ("never slower than dense"). Everything after the first call only enqueues.
//
// Knobs (environment): NMSPARSE_CUDA_DISPATCH=auto|sparse|dense, NMSPARSE_CUSPARSELT_SEARCH=1|0,
// NMSPARSE_CUDA_VERIFY=1|0.
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <vector>

#include "core/nm_format.h"
#include "cuda/internal.h"
#include "cuda/nm_kernels.cuh"
#include "cuda/ops.h"

namespace nms::cuda {

SltRules slt_rules(DType d) {
  SltRules r;
  switch (d) {
    case DType::F16: case DType::BF16:
      r.supported = true;
      r.type = d == DType::F16 ? CUDA_R_16F : CUDA_R_16BF;
      r.sparse_align = 16;
      r.dense_align = 8;
      r.max_elems = (int64_t(1) << 31) - 1;
      break;
    case DType::F32:
      r.supported = true;
      r.type = CUDA_R_32F;
      r.sparse_align = 8;
      r.dense_align = 4;
      r.max_elems = (int64_t(1) << 30) - 1;
      r.pair_rule = true;
      break;
    case DType::I8:
      r.supported = true;
      r.type = CUDA_R_8I;
      r.sparse_align = 32;
      r.dense_align = 16;
      r.max_elems = (int64_t(1) << 32) - 1;
      break;
    default:
      r.why = "cuSPARSELt has no uint8 kernels";
  }
  return r;
}

namespace {

// ---- knobs ------------------------------------------------------------------------------------------------------
enum class Dispatch { Auto, Sparse, Dense };
Dispatch dispatch_mode() {
  const char* v = std::getenv("NMSPARSE_CUDA_DISPATCH");
  if (!v || !*v || !std::strcmp(v, "auto")) return Dispatch::Auto;
  if (!std::strcmp(v, "sparse")) return Dispatch::Sparse;
  if (!std::strcmp(v, "dense")) return Dispatch::Dense;
  fail("E_VALUE", std::string("NMSPARSE_CUDA_DISPATCH: got \"") + v + "\", expected auto, sparse or dense");
}
bool env_on(const char* name, bool dflt) {
  const char* v = std::getenv(name);
  if (!v || !*v) return dflt;
  return std::strcmp(v, "0") != 0 && std::strcmp(v, "false") != 0;
}

size_t type_size(cudaDataType t) {
  switch (t) {
    case CUDA_R_32F: case CUDA_R_32I: return 4;
    case CUDA_R_16F: case CUDA_R_16BF: return 2;
    default: return 1;
  }
}

}  // namespace

// ---- cuSPARSELt plans ------------------------------------------------------------------------------------------

// D[m, n] = A[m, k] (structured, row-major, op N) · op(B) [k, n].
struct SltProblem {
  cudaDataType ab = CUDA_R_16F, cd = CUDA_R_16F;
  slt::ComputeType compute = slt::COMPUTE_32F;
  int64_t m = 0, n = 0, k = 0;
  bool b_nk = false;  // B stored [n, k] row-major (op T); else [k, n] row-major (op N)
  bool d_col = false; // D column-major (memory: [n, m] row-major); else row-major [m, n]
  bool bias = false, relu = false;  // fused epilogue
};

// Owns every cuSPARSELt object of one plan, each at a fixed heap address, destroyed in reverse order.
class SltPlan {
 public:
  SltProblem pr;
  slt::Boxed<slt::MatDescriptor> a, b, c;
  slt::Boxed<slt::MatmulDescriptor> mm;
  slt::Boxed<slt::AlgSelection> alg;
  slt::Boxed<slt::Plan> plan;
  bool a_ok = false, b_ok = false, c_ok = false, mm_ok = false, alg_ok = false, plan_ok = false;
  size_t ws = 0;
  int max_alg_id = -1;

  SltPlan() = default;
  SltPlan(const SltPlan&) = delete;
  SltPlan& operator=(const SltPlan&) = delete;
  ~SltPlan() {
    if (!(a_ok || b_ok || c_ok || alg_ok || plan_ok)) return;  // nothing made (and cuSPARSELt perhaps not loaded)
    const slt::Api& api = slt::api();
    if (plan_ok) api.MatmulPlanDestroy(plan.get());
    if (alg_ok && api.MatmulAlgSelectionDestroy) api.MatmulAlgSelectionDestroy(alg.get());
    // (there is no destroy function for the matmul descriptor)
    if (c_ok) api.MatDescriptorDestroy(c.get());
    if (b_ok) api.MatDescriptorDestroy(b.get());
    if (a_ok) api.MatDescriptorDestroy(a.get());
  }

  // Re-plans with cuSPARSELt's default algorithm. The selection is made afresh: a search leaves its split-K mode
  // and buffer count in it, which setting CONFIG_ID / SPLIT_K back would not undo.
  slt::Status use_default_algorithm(std::string* where) {
    const slt::Api& api = slt::api();
    const slt::Handle* h = slt::handle();
    if (plan_ok) {
      api.MatmulPlanDestroy(plan.get());
      plan_ok = false;
    }
    if (alg_ok && api.MatmulAlgSelectionDestroy) api.MatmulAlgSelectionDestroy(alg.get());
    alg_ok = false;
    slt::Status s = api.MatmulAlgSelectionInit(h, alg.get(), mm.get(), slt::MATMUL_ALG_DEFAULT);
    if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulAlgSelectionInit", s;
    alg_ok = true;
    s = api.MatmulPlanInit(h, plan.get(), mm.get(), alg.get());
    if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulPlanInit", s;
    plan_ok = true;
    s = api.MatmulGetWorkspace(h, plan.get(), &ws);
    if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulGetWorkspace", s;
    return s;
  }

  void read_algorithm(int* config, int* split_k, int* split_k_mode) const {
    const slt::Api& api = slt::api();
    const slt::Handle* h = slt::handle();
    *config = *split_k = *split_k_mode = -1;
    api.MatmulAlgGetAttribute(h, alg.get(), slt::MATMUL_ALG_CONFIG_ID, config, sizeof(int));
    api.MatmulAlgGetAttribute(h, alg.get(), slt::MATMUL_SPLIT_K, split_k, sizeof(int));
    api.MatmulAlgGetAttribute(h, alg.get(), slt::MATMUL_SPLIT_K_MODE, split_k_mode, sizeof(int));
  }
};

namespace {

// Builds every object of `pr` in place. On failure returns the status and names the call in *where.
slt::Status build_plan(SltPlan& p, const SltProblem& pr, const void* bias, std::string* where) {
  const slt::Api& api = slt::api();
  const slt::Handle* h = slt::handle();
  p.pr = pr;
  slt::Status s = api.StructuredDescriptorInit(h, p.a.get(), pr.m, pr.k, pr.k, 16, pr.ab, slt::ORDER_ROW,
                                               slt::SPARSITY_50_PERCENT);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtStructuredDescriptorInit", s;
  p.a_ok = true;
  s = pr.b_nk ? api.DenseDescriptorInit(h, p.b.get(), pr.n, pr.k, pr.k, 16, pr.ab, slt::ORDER_ROW)
              : api.DenseDescriptorInit(h, p.b.get(), pr.k, pr.n, pr.n, 16, pr.ab, slt::ORDER_ROW);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtDenseDescriptorInit(B)", s;
  p.b_ok = true;
  s = pr.d_col ? api.DenseDescriptorInit(h, p.c.get(), pr.m, pr.n, pr.m, 16, pr.cd, slt::ORDER_COL)
               : api.DenseDescriptorInit(h, p.c.get(), pr.m, pr.n, pr.n, 16, pr.cd, slt::ORDER_ROW);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtDenseDescriptorInit(C)", s;
  p.c_ok = true;
  s = api.MatmulDescriptorInit(h, p.mm.get(), slt::OP_N, pr.b_nk ? slt::OP_T : slt::OP_N, p.a.get(), p.b.get(),
                               p.c.get(), p.c.get(), pr.compute);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulDescriptorInit", s;
  p.mm_ok = true;
  if (pr.relu) {
    const int32_t on = 1;
    s = api.MatmulDescSetAttribute(h, p.mm.get(), slt::MATMUL_ACTIVATION_RELU, &on, sizeof on);
    if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulDescSetAttribute(ACTIVATION_RELU)", s;
  }
  if (pr.bias) {
    s = api.MatmulDescSetAttribute(h, p.mm.get(), slt::MATMUL_BIAS_POINTER, &bias, sizeof(void*));
    if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulDescSetAttribute(BIAS_POINTER)", s;
  }
  s = api.MatmulAlgSelectionInit(h, p.alg.get(), p.mm.get(), slt::MATMUL_ALG_DEFAULT);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulAlgSelectionInit", s;
  p.alg_ok = true;
  api.MatmulAlgGetAttribute(h, p.alg.get(), slt::MATMUL_ALG_CONFIG_MAX_ID, &p.max_alg_id, sizeof(int));
  s = api.MatmulPlanInit(h, p.plan.get(), p.mm.get(), p.alg.get());
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulPlanInit", s;
  p.plan_ok = true;
  s = api.MatmulGetWorkspace(h, p.plan.get(), &p.ws);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulGetWorkspace", s;
  return slt::STATUS_SUCCESS;
}

slt::Status run_plan(SltPlan& p, const void* a, const void* b, void* d, const void* bias) {
  const slt::Api& api = slt::api();
  const slt::Handle* h = slt::handle();
  if (p.pr.bias) {
    const slt::Status s = api.MatmulDescSetAttribute(h, p.mm.get(), slt::MATMUL_BIAS_POINTER, &bias, sizeof(void*));
    if (s != slt::STATUS_SUCCESS) return s;
  }
  const float alpha = 1.f, beta = 0.f;
  cudaStream_t st = stream();
  return api.Matmul(h, p.plan.get(), &alpha, a, b, &beta, d, d, workspace(p.ws).ptr(), &st, 1);  // held until enqueued
}

// ---- compression -----------------------------------------------------------------------------------------------

struct DescKey {
  int type;
  int64_t rows, cols;
  bool operator<(const DescKey& o) const {
    return type != o.type ? type < o.type : rows != o.rows ? rows < o.rows : cols < o.cols;
  }
};

// A plan used only to compress (when the descriptor-only SpMMA*2 helpers are absent): A as given, B a minimal
// [dense_align, k] operand. The compressed layout depends only on A's descriptor.
// Caches are heap objects that are never destroyed: at process exit their destructors would call into cuSPARSELt
// after the CUDA runtime may already be gone.
std::mutex g_compress_mu;
std::map<DescKey, std::unique_ptr<SltPlan>>& g_compress_plans = *new std::map<DescKey, std::unique_ptr<SltPlan>>();

SltPlan& compress_plan(cudaDataType t, int64_t rows, int64_t cols, int dense_align) {
  auto it = g_compress_plans.find({static_cast<int>(t), rows, cols});
  if (it != g_compress_plans.end()) return *it->second;
  auto p = std::make_unique<SltPlan>();
  SltProblem pr;
  pr.ab = t;
  pr.cd = t == CUDA_R_8I ? CUDA_R_32I : t;
  pr.compute = t == CUDA_R_8I ? slt::COMPUTE_32I : slt::COMPUTE_32F;
  pr.m = rows;
  pr.k = cols;
  pr.n = dense_align;
  pr.b_nk = true;
  pr.d_col = true;
  std::string where;
  const slt::Status s = build_plan(*p, pr, nullptr, &where);
  slt::check(s, where.c_str());
  return *g_compress_plans.emplace(DescKey{static_cast<int>(t), rows, cols}, std::move(p)).first->second;
}

}  // namespace

const slt::MatDescriptor* structured_descriptor(cudaDataType t, int64_t rows, int64_t cols) {
  static std::mutex mu;
  static auto& cache = *new std::map<DescKey, std::unique_ptr<slt::Boxed<slt::MatDescriptor>>>();  // never destroyed
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find({static_cast<int>(t), rows, cols});
  if (it != cache.end()) return it->second->get();
  auto box = std::make_unique<slt::Boxed<slt::MatDescriptor>>();
  NMS_SLT(slt::api().StructuredDescriptorInit(slt::handle(), box->get(), rows, cols, cols, 16, t, slt::ORDER_ROW,
                                              slt::SPARSITY_50_PERCENT));
  return cache.emplace(DescKey{static_cast<int>(t), rows, cols}, std::move(box)).first->second->get();
}

DevPtr slt_compress(cudaDataType t, int64_t rows, int64_t cols, int dense_align, const void* dense, const char* check_as) {
  const slt::Api& api = slt::api();
  const slt::Handle* h = slt::handle();
  size_t csize = 0, bsize = 0;
  DevPtr compressed, buffer;
  static std::mutex checked_mu;
  static std::vector<int> checked;
  auto sanity_check = [&](auto&& run_check) {
    // Once per type and process: cuSPARSELt's own pattern check agrees with ours (it needs a host sync).
    if (!check_as) return;
    {
      std::lock_guard<std::mutex> lock(checked_mu);
      if (std::find(checked.begin(), checked.end(), static_cast<int>(t)) != checked.end()) return;
      checked.push_back(static_cast<int>(t));
    }
    DevPtr valid = alloc_zeroed(sizeof(int));
    NMS_SLT(run_check(valid->as<int>()));
    int v = -1;
    download(&v, valid->ptr(), sizeof v);
    if (v != 0)
      fail("E_INTERNAL", std::string("cuSPARSELt's prune check rejects a ") + check_as +
                             " matrix that nmsparse's N:M check accepts; please report this");
  };
  if (api.SpMMACompressedSize2 && api.SpMMACompress2) {
    const slt::MatDescriptor* desc = structured_descriptor(t, rows, cols);
    NMS_SLT(api.SpMMACompressedSize2(h, desc, &csize, &bsize));
    compressed = alloc(csize);
    buffer = alloc(bsize);
    if (api.SpMMAPruneCheck2)
      sanity_check([&](int* v) { return api.SpMMAPruneCheck2(h, desc, 1, slt::OP_N, dense, v, stream()); });
    NMS_SLT(api.SpMMACompress2(h, desc, 1, slt::OP_N, dense, compressed->ptr(), buffer ? buffer->ptr() : nullptr,
                               stream()));
  } else {
    std::lock_guard<std::mutex> lock(g_compress_mu);
    SltPlan& p = compress_plan(t, rows, cols, dense_align);
    NMS_SLT(api.SpMMACompressedSize(h, p.plan.get(), &csize, &bsize));
    compressed = alloc(csize);
    buffer = alloc(bsize);
    sanity_check([&](int* v) { return api.SpMMAPruneCheck(h, p.mm.get(), dense, v, stream()); });
    NMS_SLT(api.SpMMACompress(h, p.plan.get(), dense, compressed->ptr(), buffer ? buffer->ptr() : nullptr, stream()));
  }
  return compressed;  // `buffer` is freed stream-ordered, after the compression
}

namespace {

// −0.0 → +0.0 in place (bits: T is the float's storage, `sign` its sign bit).
template <class T>
__global__ void positive_zero_kernel(T* __restrict__ v, int64_t n, T sign) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    if (v[i] == sign) v[i] = 0;
}

// Our N:M check counts −0.0 as zero; cuSPARSELt sees a non-zero bit pattern, so a kept −0.0 could make a group
// it takes for 3:4. Zero's sign does not change any product.
void positive_zeros(void* v, DType d, int64_t n) {
  const unsigned grid = std::min(grid_for(n, 256), 4096u);
  if (d == DType::F32)
    positive_zero_kernel<uint32_t><<<grid, 256, 0, stream()>>>(static_cast<uint32_t*>(v), n, 0x80000000u);
  else if (d == DType::F16 || d == DType::BF16)
    positive_zero_kernel<uint16_t><<<grid, 256, 0, stream()>>>(static_cast<uint16_t*>(v), n, uint16_t(0x8000));
  else
    return;  // integers have one zero
  check_launch("positive_zero_kernel");
}

}  // namespace

void build_slt_form(SparseMatrix& s, void* dense_pruned) {
  const SltRules rules = slt_rules(s.dtype);
  if (!rules.supported) {
    s.slt_reason = rules.why;
    return;
  }
  const slt::LoadResult& lib = slt::load();
  if (!lib.ok) {
    s.slt_reason = "sparse products run dense: " + lib.error;
    return;
  }
  s.rows_pad = round_up(s.rows, rules.sparse_align);
  s.cols_pad = round_up(s.cols, rules.sparse_align);
  if (s.rows_pad * s.cols_pad > rules.max_elems) {
    s.slt_reason = std::string("cuSPARSELt takes at most ") + std::to_string(rules.max_elems) + " elements per " +
                   dtype_name(s.dtype) + " matrix; this weight has " + std::to_string(s.rows_pad * s.cols_pad) +
                   " (padded to [" + std::to_string(s.rows_pad) + ", " + std::to_string(s.cols_pad) + "])";
    return;
  }
  // Sparse tensor cores need 2:4 along K (1:2 for float32). N <= 2 (N <= 1) guarantees it; otherwise check.
  const int hw_n = rules.pair_rule ? 1 : 2, hw_m = rules.pair_rule ? 2 : 4;
  if (s.n > hw_n) {
    int nz = 0;
    const int64_t g = nm_check(dense_pruned, s.dtype, s.rows, s.cols, hw_n, hw_m, &nz);
    if (g >= 0) {
      const int64_t per_row = s.cols / hw_m;
      s.slt_reason = std::to_string(s.n) + ":" + std::to_string(s.m) + " leaves " + std::to_string(nz) +
                     " non-zeros in the group of " + std::to_string(hw_m) + " at [" + std::to_string(g / per_row) +
                     ", " + std::to_string((g % per_row) * hw_m) + "]; cuSPARSELt's " + dtype_name(s.dtype) +
                     " kernels need " + std::to_string(hw_n) + ":" + std::to_string(hw_m) + " along each row" +
                     (rules.pair_rule ? " (float32 uses 1:2 pairs; prune float32 weights with 1:4 / 2:8 … or use "
                                        "float16/bfloat16 for 2:4)"
                                      : "");
      return;
    }
  }
  positive_zeros(dense_pruned, s.dtype, s.rows * s.cols);
  const void* src = dense_pruned;
  DevPtr padded;
  if (s.rows_pad != s.rows || s.cols_pad != s.cols) {
    padded = pad_matrix(dense_pruned, dtype_size(s.dtype), s.rows, s.cols, s.rows_pad, s.cols_pad);
    src = padded->ptr();
  }
  // A refusal (NOT_SUPPORTED, INVALID_VALUE, ARCH_MISMATCH: float32 on some versions, pytorch#132928) or a prune
  // check that disagrees with ours leaves the portable form and the dense path; only running out of memory, or a
  // CUDA error, is the caller's failure.
  try {
    s.slt_compressed = slt_compress(rules.type, s.rows_pad, s.cols_pad, rules.dense_align, src, dtype_name(s.dtype));
  } catch (const Error& e) {
    if (e.code != "E_CUSPARSELT" && e.code != "E_INTERNAL") throw;
    s.slt_reason = std::string("cuSPARSELt refused this weight, so its products run dense: ") + e.what();
    return;
  }
  s.has_slt = true;
}

// ---- reference check -------------------------------------------------------------------------------------------

namespace {

__device__ __forceinline__ double load_any(const void* p, int kind, int64_t i) {
  switch (kind) {
    case CUDA_R_32F: return static_cast<const float*>(p)[i];
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
    case CUDA_R_16BF: return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16);
    case CUDA_R_8I: return static_cast<const int8_t*>(p)[i];
    case CUDA_R_32I: return static_cast<const int32_t*>(p)[i];
    case CUDA_R_8F_E4M3: return static_cast<float>(static_cast<const __nv_fp8_e4m3*>(p)[i]);
    default: return static_cast<const uint8_t*>(p)[i];
  }
}

// Y[i, j] = act(Σ_k L[i, k] · R[k, j] + bias) for sampled (i, j), in float64, with Σ|L·R| for the tolerance.
// L(i, k) = l[i * l_si + k * l_sk]; R(k, j) = r[k * r_sk + j * r_sj]; the output read from out[i * o_ld + j].
struct RefArgs {
  const void* l; int l_kind; int64_t l_si, l_sk;
  const void* r; int r_kind; int64_t r_sk, r_sj;
  int64_t K;
  const void* bias; int bias_kind; bool bias_per_row;
  int act;
  const void* out; int out_kind; int64_t o_ld;
  const int64_t* is; const int64_t* js; int samples;
  double* result;  // [samples][3]: reference, Σ|terms|, got
};

__global__ void ref_kernel(RefArgs a) {
  const int s = blockIdx.x;
  if (s >= a.samples) return;
  const int64_t i = a.is[s], j = a.js[s];
  double sum = 0, abs_sum = 0;
  for (int64_t k = threadIdx.x; k < a.K; k += blockDim.x) {
    const double t = load_any(a.l, a.l_kind, i * a.l_si + k * a.l_sk) * load_any(a.r, a.r_kind, k * a.r_sk + j * a.r_sj);
    sum += t;
    abs_sum += fabs(t);
  }
  for (int off = 16; off > 0; off >>= 1) {
    sum += __shfl_down_sync(0xffffffffu, sum, off);
    abs_sum += __shfl_down_sync(0xffffffffu, abs_sum, off);
  }
  if (threadIdx.x == 0) {
    if (a.bias) {
      const double b = load_any(a.bias, a.bias_kind, a.bias_per_row ? i : j);
      sum += b;
      abs_sum += fabs(b);
    }
    if (a.act == 1) sum = sum > 0 ? sum : 0;
    else if (a.act == 2) sum = 0.5 * sum * (1 + erf(sum * 0.70710678118654752));
    a.result[3 * s] = sum;
    a.result[3 * s + 1] = abs_sum;
    a.result[3 * s + 2] = load_any(a.out, a.out_kind, i * a.o_ld + j);
  }
}

int dtype_kind(DType d) { return d == DType::U8 ? -2 : static_cast<int>(cuda_data_type(d)); }

// Sample points spread over [0, n): the ends, and evenly in between.
std::vector<int64_t> spread(int64_t n, int count) {
  std::vector<int64_t> v;
  if (n <= count) {
    for (int64_t i = 0; i < n; ++i) v.push_back(i);
    return v;
  }
  for (int c = 0; c < count; ++c) v.push_back(c * (n - 1) / (count - 1));
  return v;
}

// Relative tolerances of the output against the float64 reference: on Σ|terms| (input rounding, accumulation)
// and on |reference| (the rounding of the output itself). A wrong algorithm misses these by orders of magnitude.
void tolerances(DType in, DType out, double* t_terms, double* t_out) {
  *t_terms = in == DType::I8 ? 0.0 : in == DType::F32 ? 1.0 / 512 /* TF32 */ : 1.0 / 1024;
  *t_out = out == DType::F16 ? 1.0 / 1024 : out == DType::BF16 ? 1.0 / 128 : out == DType::F32 ? 1.0 / (1 << 20) : 0.5;
}

// Checks g.out (already computed) against the reference. Returns an empty string when it matches.
std::string verify_output(const SparseGemm& g, const void* w_dense) {
  const SparseMatrix& s = *g.s;
  const int64_t out_rows = g.linear ? g.p : s.rows, out_cols = g.linear ? s.rows : g.p;
  const std::vector<int64_t> ri = spread(out_rows, 24), ci = spread(out_cols, 24);
  std::vector<int64_t> is, js;
  for (int64_t i : ri)
    for (int64_t j : ci) {
      is.push_back(i);
      js.push_back(j);
    }
  const int n = static_cast<int>(is.size());
  DevPtr d_is = alloc(n * sizeof(int64_t)), d_js = alloc(n * sizeof(int64_t)), d_res = alloc(n * 3 * sizeof(double));
  upload(d_is->ptr(), is.data(), n * sizeof(int64_t));
  upload(d_js->ptr(), js.data(), n * sizeof(int64_t));
  RefArgs a{};
  const int wk = dtype_kind(s.dtype);
  if (g.linear) {  // Y[t, o] = Σ_k X[t, k] W[o, k]
    a.l = g.b; a.l_kind = wk; a.l_si = s.cols; a.l_sk = 1;
    a.r = w_dense; a.r_kind = wk; a.r_sk = 1; a.r_sj = s.cols;
  } else {  // Y[r, j] = Σ_k W[r, k] B[k, j]
    a.l = w_dense; a.l_kind = wk; a.l_si = s.cols; a.l_sk = 1;
    a.r = g.b; a.r_kind = wk; a.r_sk = g.p; a.r_sj = 1;
  }
  a.K = s.cols;
  a.bias = g.bias;
  a.bias_kind = s.dtype == DType::I8 ? static_cast<int>(CUDA_R_32F) : wk;
  a.bias_per_row = !g.linear;
  a.act = static_cast<int>(g.act);
  a.out = g.out;
  a.out_kind = dtype_kind(g.out_dtype);
  a.o_ld = out_cols;
  a.is = d_is->as<int64_t>();
  a.js = d_js->as<int64_t>();
  a.samples = n;
  a.result = d_res->as<double>();
  ref_kernel<<<n, 32, 0, stream()>>>(a);
  check_launch("reference check kernel");
  std::vector<double> res(3 * n);
  download(res.data(), d_res->ptr(), res.size() * sizeof(double));
  double t_terms, t_out;
  tolerances(s.dtype, g.out_dtype, &t_terms, &t_out);
  const double slack = g.act == Act::None ? 1.0 : 1.25;
  for (int k = 0; k < n; ++k) {
    double ref = res[3 * k];
    const double abs_sum = res[3 * k + 1], got = res[3 * k + 2];
    double tol = slack * t_terms * abs_sum + t_out * std::fabs(ref) + 1e-30;
    if (g.out_dtype == DType::I8) {  // rounded and saturated like nms::store_from_f32
      ref = std::min(127.0, std::max(-128.0, std::nearbyint(ref)));
      tol = 0.5;
    }
    if (!(std::fabs(got - ref) <= tol)) {  // NaN fails too
      std::ostringstream o;
      o << "output [" << is[k] << ", " << js[k] << "] = " << got << ", reference " << ref << " (tolerance " << tol << ")";
      return o.str();
    }
  }
  return "";
}

// ---- the plan cache --------------------------------------------------------------------------------------------

struct Entry {
  std::unique_ptr<SltPlan> slt;  // null when the key runs dense
  bool use_sparse = false;
  PlanInfo info;
};

std::mutex g_plans_mu;
std::map<std::string, std::unique_ptr<Entry>>& g_plans = *new std::map<std::string, std::unique_ptr<Entry>>();  // never destroyed

std::string make_key(const SparseGemm& g, const SltProblem* pr, const char* why_dense, Dispatch mode) {
  const SparseMatrix& s = *g.s;
  std::ostringstream k;
  if (mode != Dispatch::Auto) k << (mode == Dispatch::Sparse ? "[forced sparse] " : "[forced dense] ");
  k << (g.linear ? "linear " : "matmul ") << dtype_name(s.dtype) << "->" << dtype_name(g.out_dtype) << " W["
    << s.rows << "x" << s.cols << "]";
  if (pr) k << " pad[" << pr->m << "x" << pr->k << "] n=" << pr->n;
  else k << " p=" << g.p << " (" << why_dense << ")";
  if (g.bias) k << " +bias";
  if (g.act == Act::Relu) k << " relu";
  if (g.act == Act::Gelu) k << " gelu";
  return k.str();
}

void run_dense(const SparseGemm& g) {
  SparseMatrix& s = *g.s;
  const void* w = dense_of(s);
  DenseGemm d{};
  d.dtype = s.dtype;
  d.out_dtype = g.out_dtype;
  d.c = g.out;
  d.k = s.cols;
  d.bias = g.bias;
  d.act = g.act;
  d.tf32 = true;  // the sparse path's math for float32, so both paths agree
  if (g.linear) {  // Y[p, rows] = X · W̃ᵀ
    d.a = g.b;
    d.b = w;
    d.m = g.p;
    d.n = s.rows;
    d.trans_b = true;
  } else {  // Y[rows, p] = W̃ · B
    d.a = w;
    d.b = g.b;
    d.m = s.rows;
    d.n = g.p;
    d.bias_per_row = true;
  }
  dense_gemm(d);
}

void run_dense_or_explain(const SparseGemm& g, const std::string& why_not_sparse) {
  try {
    run_dense(g);
  } catch (const Error& ex) {
    if (ex.code != "E_UNSUPPORTED") throw;
    fail("E_UNSUPPORTED", std::string(ex.what()) + " (and cuSPARSELt cannot run it: " + why_not_sparse + ")");
  }
}

// The dense operand as the plan takes it: padded to [n, k] / [k, n], transposed first for int8 matmul.
const void* prepare_b(const SltPlan& P, const SparseGemm& g, DevPtr& bt, DevPtr& bp) {
  const SparseMatrix& s = *g.s;
  const SltProblem& pr = P.pr;
  const size_t es = dtype_size(s.dtype);
  const void* B = g.b;
  if (g.linear) {  // X [p, cols] -> [n, k]
    if (pr.n != g.p || pr.k != s.cols) B = (bp = pad_matrix(B, es, g.p, s.cols, pr.n, pr.k))->ptr();
  } else if (!pr.b_nk) {  // B [cols, p] -> [k, n]
    if (pr.n != g.p || pr.k != s.cols) B = (bp = pad_matrix(B, es, s.cols, g.p, pr.k, pr.n))->ptr();
  } else {  // int8 matmul: Bᵀ [p, cols] -> [n, k]
    bt = alloc(static_cast<size_t>(g.p * s.cols) * es);
    transpose2d(B, es, s.cols, g.p, bt->ptr());
    B = bt->ptr();
    if (pr.n != g.p || pr.k != s.cols) B = (bp = pad_matrix(B, es, g.p, s.cols, pr.n, pr.k))->ptr();
  }
  return B;
}

// The sparse path of one call: pad / transpose the dense operand, cusparseLtMatmul, then the epilogue or copy-out.
void run_sparse(SltPlan& P, const SparseGemm& g) {
  SparseMatrix& s = *g.s;
  const SltProblem& pr = P.pr;
  const size_t es = dtype_size(s.dtype);
  const bool is_int = s.dtype == DType::I8;
  DevPtr bt, bp;
  const void* B = prepare_b(P, g, bt, bp);
  const size_t es_d = type_size(pr.cd);
  const bool direct = !is_int && pr.m == s.rows && pr.n == g.p;
  DevPtr dt;
  void* D = direct ? g.out : (dt = alloc(static_cast<size_t>(pr.m * pr.n) * es_d))->ptr();
  const void* bias = nullptr;
  DevPtr biasp;
  if (pr.bias) {
    bias = g.bias;
    if (pr.m != s.rows) {
      biasp = alloc_zeroed(static_cast<size_t>(pr.m) * es);
      copy_d2d(biasp->ptr(), g.bias, static_cast<size_t>(s.rows) * es);
      bias = biasp->ptr();
    }
  }
  NMS_SLT(run_plan(P, s.slt_compressed->ptr(), B, D, bias));
  const int64_t out_rows = g.linear ? g.p : s.rows, out_cols = g.linear ? s.rows : g.p;
  const int64_t d_ld = g.linear ? pr.m : pr.n;  // D in memory: linear [n, m] (column-major D); matmul [m, n]
  EpilogueArgs post{D, is_int ? kSrcInt32 : static_cast<int>(s.dtype), d_ld, g.out, g.out_dtype, out_rows, out_cols};
  if (g.bias && !pr.bias) {
    post.bias = g.bias;
    post.bias_dtype = is_int ? DType::F32 : s.dtype;
    post.bias_per_row = !g.linear;
  }
  if (g.act != Act::None && !(g.act == Act::Relu && pr.relu)) post.act = g.act;
  if (is_int || post.bias || post.act != Act::None) {
    epilogue(post);
  } else if (!direct) {
    NMS_CUDA(cudaMemcpy2DAsync(g.out, out_cols * es, D, d_ld * es, out_cols * es, out_rows, cudaMemcpyDeviceToDevice,
                               stream()));
  }
}

// Median time of `fn` in milliseconds, with CUDA events, after `warmup` runs.
template <class F>
double time_ms(F&& fn, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) NMS_CUDA(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    NMS_CUDA(cudaEventRecord(ev[2 * i], stream()));
    fn();
    NMS_CUDA(cudaEventRecord(ev[2 * i + 1], stream()));
  }
  NMS_CUDA(cudaEventSynchronize(ev.back()));
  std::vector<float> t(iters);
  for (int i = 0; i < iters; ++i) cudaEventElapsedTime(&t[i], ev[2 * i], ev[2 * i + 1]);
  for (auto& e : ev) cudaEventDestroy(e);
  std::sort(t.begin(), t.end());
  return t[iters / 2];
}

// First call of a key: plan, search, verify, time against dense, decide. Runs the call itself too.
std::unique_ptr<Entry> create_entry(const SparseGemm& g, const SltProblem& want, const std::string& key,
                                    Dispatch mode) {
  SparseMatrix& s = *g.s;
  auto e = std::make_unique<Entry>();
  e->info.key = key;
  auto fall_back = [&](const std::string& why) {
    if (mode == Dispatch::Sparse) fail("E_CUSPARSELT", "NMSPARSE_CUDA_DISPATCH=sparse, but " + why);
    e->slt.reset();
    e->use_sparse = false;
    e->info.path = "dense";
    e->info.reason = why;
    run_dense_or_explain(g, why);
    return std::move(e);
  };
  if (mode == Dispatch::Dense) return fall_back("NMSPARSE_CUDA_DISPATCH=dense");

  // 1. the plan, with the epilogue fused when cuSPARSELt takes it
  SltProblem pr = want;
  std::string where;
  auto plan = std::make_unique<SltPlan>();
  slt::Status st = build_plan(*plan, pr, g.bias, &where);
  if (st != slt::STATUS_SUCCESS && (pr.bias || pr.relu)) {
    e->info.reason = "fused epilogue refused (" + where + ": " + slt::status_text(st) + "); ";
    pr.bias = pr.relu = false;
    plan = std::make_unique<SltPlan>();
    st = build_plan(*plan, pr, nullptr, &where);
  }
  if (st == slt::STATUS_ALLOC_FAILED || st == slt::STATUS_INSUFFICIENT_RESOURCES) slt::check(st, where.c_str());
  if (st != slt::STATUS_SUCCESS) return fall_back(where + " failed: " + slt::status_text(st));
  e->info.max_alg_id = plan->max_alg_id;
  e->slt = std::move(plan);
  SltPlan& P = *e->slt;

  // 2. one search per key, on this call's operands
  const bool verify = env_on("NMSPARSE_CUDA_VERIFY", true);
  if (env_on("NMSPARSE_CUSPARSELT_SEARCH", true)) {
    // This call's operands, padded as run_sparse() passes them; the search writes D (beta = 0: C is not read).
    DevPtr bt, bp;
    const void* b_op = prepare_b(P, g, bt, bp);
    DevPtr d_op = alloc(static_cast<size_t>(pr.m * pr.n) * type_size(pr.cd));
    DevPtr bias_op;
    const void* bias = nullptr;
    if (pr.bias) {
      bias_op = alloc_zeroed(static_cast<size_t>(pr.m) * dtype_size(s.dtype));
      copy_d2d(bias_op->ptr(), g.bias, static_cast<size_t>(s.rows) * dtype_size(s.dtype));
      bias = bias_op->ptr();
      NMS_SLT(slt::api().MatmulDescSetAttribute(slt::handle(), P.mm.get(), slt::MATMUL_BIAS_POINTER, &bias, sizeof(void*)));
    }
    const float alpha = 1.f, beta = 0.f;
    cudaStream_t strm = stream();
    // Workspace: the plan's own need or 64 MiB, whichever is larger (the search may try split-K variants).
    const slt::Status ss = slt::api().MatmulSearch(slt::handle(), P.plan.get(), &alpha, s.slt_compressed->ptr(),
                                                   b_op, &beta, d_op->ptr(), d_op->ptr(),
                                                   workspace(std::max<size_t>(P.ws, 64u << 20)).ptr(), &strm, 1);
    sync();
    if (ss == slt::STATUS_SUCCESS) {
      e->info.searched = true;
      slt::Status ws_st = slt::api().MatmulGetWorkspace(slt::handle(), P.plan.get(), &P.ws);
      if (ws_st != slt::STATUS_SUCCESS) P.ws = std::max<size_t>(P.ws, 64u << 20);
    } else {
      e->info.reason += "cusparseLtMatmulSearch failed (" + slt::status_text(ss) + "), default algorithm used; ";
      st = P.use_default_algorithm(&where);
      if (st != slt::STATUS_SUCCESS) return fall_back(where + " failed: " + slt::status_text(st));
    }
  }
  P.read_algorithm(&e->info.alg_id, &e->info.split_k, &e->info.split_k_mode);
  e->info.workspace = P.ws;

  // 3. check the chosen algorithm once against the float64 reference; retry with the default one if it fails
  if (verify) {
    const void* w = dense_of(s);
    run_sparse(P, g);
    std::string bad = verify_output(g, w);
    if (!bad.empty() && (e->info.alg_id != 0 || e->info.split_k > 1)) {
      e->info.reason += "algorithm " + std::to_string(e->info.alg_id) + " (split-K " + std::to_string(e->info.split_k) +
                        ") gave a wrong result: " + bad + "; ";
      st = P.use_default_algorithm(&where);
      if (st != slt::STATUS_SUCCESS) return fall_back(where + " failed: " + slt::status_text(st));
      P.read_algorithm(&e->info.alg_id, &e->info.split_k, &e->info.split_k_mode);
      e->info.workspace = P.ws;
      run_sparse(P, g);
      bad = verify_output(g, w);
    }
    if (!bad.empty()) return fall_back(e->info.reason + "cuSPARSELt's result failed the reference check: " + bad);
    e->info.verified = true;
  }

  // 4. sparse or dense for this key: whichever is faster on this GPU (cuBLASLt on the same pruned weight)
  e->use_sparse = true;
  e->info.path = "sparse";
  if (mode == Dispatch::Auto && blt::load().ok) {
    e->info.sparse_ms = time_ms([&] { run_sparse(P, g); }, 2, 7);
    try {
      e->info.dense_ms = time_ms([&] { run_dense(g); }, 2, 7);
    } catch (const Error& ex) {
      if (ex.code != "E_UNSUPPORTED" && ex.code != "E_CUBLAS") throw;
      e->info.reason += std::string("no dense comparison: ") + ex.what() + "; ";
    }
    if (e->info.dense_ms >= 0 && e->info.dense_ms < e->info.sparse_ms) {
      e->use_sparse = false;
      e->info.path = "dense";
      e->info.reason += "cuBLASLt on the pruned weight was faster for this shape";
    }
  } else if (mode == Dispatch::Auto) {
    e->info.reason += "cuBLASLt not loaded: no dense comparison";
  }
  if (e->use_sparse) run_sparse(P, g);
  else run_dense(g);
  if (e->use_sparse) drop_dense(s);  // the dense copy was only for checking and timing
  return e;
}

}  // namespace

namespace {

// What sparse_gemm() decides before looking at the cache: the problem cuSPARSELt would get, or why it cannot.
struct Prepared {
  Dispatch mode = Dispatch::Auto;
  SltProblem pr;
  std::string why_dense;
  std::string key;
};

Prepared prepare(const SparseGemm& g) {
  const SparseMatrix& s = *g.s;
  if (s.dtype == DType::U8) fail("E_UNSUPPORTED", "GEMM on 'cuda' does not support uint8 tensors");
  if (s.dtype != DType::I8 && g.out_dtype != s.dtype)
    fail("E_DTYPE", std::string("a ") + dtype_name(s.dtype) + " sparse product is " + dtype_name(s.dtype) + ", not " +
                        dtype_name(g.out_dtype));
  Prepared q;
  q.mode = dispatch_mode();
  const SltRules rules = slt_rules(s.dtype);
  SltProblem& pr = q.pr;
  if (!s.has_slt) {
    q.why_dense = s.slt_reason;
  } else {
    pr.ab = rules.type;
    pr.cd = s.dtype == DType::I8 ? CUDA_R_32I : rules.type;
    pr.compute = s.dtype == DType::I8 ? slt::COMPUTE_32I : slt::COMPUTE_32F;
    pr.m = s.rows_pad;
    pr.k = s.cols_pad;
    pr.n = round_up(g.p, rules.dense_align);
    pr.b_nk = g.linear || s.dtype == DType::I8;
    pr.d_col = g.linear;
    pr.bias = g.bias && s.dtype != DType::I8;
    pr.relu = g.act == Act::Relu && s.dtype != DType::I8;
    if (pr.n * pr.k > rules.max_elems || pr.n * pr.m > rules.max_elems)
      q.why_dense = "cuSPARSELt takes at most " + std::to_string(rules.max_elems) + " elements per dense operand; p = " +
                    std::to_string(g.p) + " makes [" + std::to_string(pr.n) + ", " + std::to_string(std::max(pr.k, pr.m)) +
                    "]";
  }
  q.key = make_key(g, q.why_dense.empty() ? &pr : nullptr, q.why_dense.c_str(), q.mode);
  return q;
}

}  // namespace

void sparse_gemm(const SparseGemm& g) {
  activate();
  const Prepared q = prepare(g);
  std::lock_guard<std::mutex> lock(g_plans_mu);
  auto it = g_plans.find(q.key);
  if (it == g_plans.end()) {
    if (!q.why_dense.empty()) {
      if (q.mode == Dispatch::Sparse) fail("E_UNSUPPORTED", "NMSPARSE_CUDA_DISPATCH=sparse, but " + q.why_dense);
      auto e = std::make_unique<Entry>();
      e->info.key = q.key;
      e->info.path = "dense";
      e->info.reason = q.why_dense;
      g_plans.emplace(q.key, std::move(e));
      run_dense_or_explain(g, q.why_dense);
      return;
    }
    if (g_plans.size() >= 1024) g_plans.clear();  // a bound on host memory for programs with endless shapes
    g_plans.emplace(q.key, create_entry(g, q.pr, q.key, q.mode));
    return;  // create_entry ran the call
  }
  Entry& e = *it->second;
  if (e.use_sparse) run_sparse(*e.slt, g);
  else run_dense(g);
}

std::vector<PlanInfo> plan_info() {
  std::lock_guard<std::mutex> lock(g_plans_mu);
  std::vector<PlanInfo> v;
  for (auto& kv : g_plans) v.push_back(kv.second->info);
  return v;
}

void clear_plans() {
  {
    std::lock_guard<std::mutex> lock(g_plans_mu);
    g_plans.clear();
  }
  clear_dense_plans();
}

NativeLoopResult bench_native_loop(const SparseGemm& g, int iters) {
  sparse_gemm(g);  // makes (or finds) the key's plan
  NativeLoopResult r;
  r.iters = iters;
  const std::string key = prepare(g).key;
  std::lock_guard<std::mutex> lock(g_plans_mu);
  auto it = g_plans.find(key);
  if (it == g_plans.end() || !it->second->use_sparse) {
    r.path = "dense";
    return r;
  }
  r.path = "sparse";
  SltPlan& P = *it->second->slt;
  // The raw loop: operands already in cuSPARSELt's shape, one cusparseLtMatmul per iteration, nothing else.
  const SltProblem& pr = P.pr;
  // The caller's own operand (padded as run_sparse() pads it), not zeros: zeros run faster than real data.
  DevPtr bt, bp;
  const void* b_op = prepare_b(P, g, bt, bp);
  DevPtr d_op = alloc(static_cast<size_t>(pr.m * pr.n) * type_size(pr.cd));
  DevPtr bias_op = pr.bias ? alloc_zeroed(static_cast<size_t>(pr.m) * type_size(pr.ab)) : nullptr;
  const void* bias = bias_op ? bias_op->ptr() : nullptr;
  for (int i = 0; i < 3; ++i) NMS_SLT(run_plan(P, g.s->slt_compressed->ptr(), b_op, d_op->ptr(), bias));
  sync();
  cudaEvent_t a, b;
  NMS_CUDA(cudaEventCreate(&a));
  NMS_CUDA(cudaEventCreate(&b));
  NMS_CUDA(cudaEventRecord(a, stream()));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) NMS_SLT(run_plan(P, g.s->slt_compressed->ptr(), b_op, d_op->ptr(), bias));
  const auto t1 = std::chrono::steady_clock::now();
  NMS_CUDA(cudaEventRecord(b, stream()));
  NMS_CUDA(cudaEventSynchronize(b));
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  r.ms_per_call_gpu = ms / iters;
  r.us_per_call_host = std::chrono::duration<double, std::micro>(t1 - t0).count() / iters;
  return r;
}

// ---- benchmark: sparse vs dense on synthetic data ---------------------------------------------------------------

namespace {

__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}

// Random values in [-1, 1) (int8: integers in [-7, 7]); pattern 1 zeroes 2 of every 4 along rows, pattern 2 one
// of every 2 (cuSPARSELt's float32 rule). Which ones depends on the group, so every kept position occurs.
__global__ void fill_kernel(void* p, int kind, int64_t count, uint64_t seed, int pattern) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = (hash32(seed * 0x9e3779b97f4a7c15ull + i) >> 8) * (2.0f / 16777216.0f) - 1.0f;
    if (pattern == 1) {
      const uint32_t choice = hash32(seed ^ (i >> 2)) % 6;  // one of the 6 ways to keep 2 of 4
      const int pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
      const int pos = static_cast<int>(i & 3);
      if (pos != pairs[choice][0] && pos != pairs[choice][1]) v = 0;
    } else if (pattern == 2) {
      if (static_cast<int>(i & 1) != static_cast<int>(hash32(seed ^ (i >> 1)) & 1)) v = 0;
    }
    switch (kind) {
      case CUDA_R_32F: static_cast<float*>(p)[i] = v; break;
      case CUDA_R_16F: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
      case CUDA_R_16BF: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
      case CUDA_R_8I: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(nearbyintf(v * 7)); break;
      case CUDA_R_8F_E4M3: static_cast<__nv_fp8_e4m3*>(p)[i] = __nv_fp8_e4m3(v); break;
    }
  }
}

void fill(void* p, cudaDataType t, int64_t count, uint64_t seed, int pattern) {
  unsigned blocks = grid_for(count, 256);
  if (blocks > 65536) blocks = 65536;
  fill_kernel<<<blocks, 256, 0, stream()>>>(p, static_cast<int>(t), count, seed, pattern);
  check_launch("fill kernel");
}

// max |a - b| and max |b| over two outputs of the same layout.
__global__ void diff_kernel(const void* a, const void* b, int kind, int64_t count, unsigned* out) {
  float md = 0, mb = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float x = static_cast<float>(load_any(a, kind, i)), y = static_cast<float>(load_any(b, kind, i));
    md = fmaxf(md, fabsf(x - y));
    mb = fmaxf(mb, fabsf(y));
    if (x != x) md = 3.0e38f;
  }
  atomicMax(out, __float_as_uint(md));
  atomicMax(out + 1, __float_as_uint(mb));
}

template <class F>
double median_ms(F&& fn, int warmup, int iters) { return time_ms(fn, warmup, iters); }

// One timed candidate of bench_gemm: the sparse plan (heuristic -1) or one cuBLASLt heuristic.
struct Timed {
  int heuristic;
  std::function<void()> call;
};

}  // namespace

GemmBenchResult bench_gemm(const GemmBench& b) {
  activate();
  GemmBenchResult r;
  cudaDataType t, cd, dense_out, scale = CUDA_R_32F;
  slt::ComputeType sc = slt::COMPUTE_32F;
  blt::ComputeType dc = blt::COMPUTE_32F;
  int pattern = 1, sparse_align = 16, dense_align = 8;
  DType ours = DType::F16;  // for the prune timing
  bool has_ours = true;
  if (b.dtype == "float16") { t = cd = dense_out = CUDA_R_16F; }
  else if (b.dtype == "bfloat16") { t = cd = dense_out = CUDA_R_16BF; ours = DType::BF16; }
  else if (b.dtype == "float32") {
    t = cd = dense_out = CUDA_R_32F; ours = DType::F32; pattern = 2; sparse_align = 8; dense_align = 4;
    dc = blt::COMPUTE_32F_FAST_TF32;  // TF32 on both sides
  } else if (b.dtype == "int8") {
    t = CUDA_R_8I; cd = dense_out = CUDA_R_32I; scale = CUDA_R_32I; ours = DType::I8;
    sc = slt::COMPUTE_32I; dc = blt::COMPUTE_32I; sparse_align = 32; dense_align = 16;
  } else if (b.dtype == "e4m3") {
    t = CUDA_R_8F_E4M3; cd = dense_out = CUDA_R_16F; has_ours = false; sparse_align = 32; dense_align = 16;
  } else {
    fail("E_VALUE", "cudaBenchGemm: dtype must be float16, bfloat16, float32, int8 or e4m3, got " + b.dtype);
  }
  if (b.m % sparse_align || b.k % sparse_align || b.n % dense_align)
    fail("E_SHAPE", "cudaBenchGemm: m, k must be multiples of " + std::to_string(sparse_align) + " and n of " +
                        std::to_string(dense_align));
  const size_t es = type_size(t), es_d = type_size(cd);
  r.weight_bytes = b.m * b.k * static_cast<int64_t>(es);

  // Rotate among copies so that small problems do not run from L2 (50 MB on H100).
  int l2 = 0;
  cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, status().device);
  const double per_copy = static_cast<double>(b.m * b.k + b.n * b.k) * es;
  const int copies = static_cast<int>(std::min(8.0, std::max(1.0, std::ceil(2.0 * l2 / per_copy))));
  std::vector<DevPtr> w(copies), wc(copies), x(copies);
  const bool slt_ok = slt::load().ok;  // without cuSPARSELt: the dense side and our prune only
  for (int c = 0; c < copies; ++c) {
    w[c] = alloc(static_cast<size_t>(b.m * b.k) * es);
    x[c] = alloc(static_cast<size_t>(b.n * b.k) * es);
    fill(w[c]->ptr(), t, b.m * b.k, 1000 + c, pattern);
    fill(x[c]->ptr(), t, b.n * b.k, 2000 + c, 0);
    if (slt_ok) wc[c] = slt_compress(t, b.m, b.k, dense_align, w[c]->ptr(), nullptr);
  }
  DevPtr ds = alloc(static_cast<size_t>(b.m * b.n) * es_d), dd = alloc(static_cast<size_t>(b.m * b.n) * es_d);

  // prune (our kernel, on a dense weight) + compress (cuSPARSELt) against a device-to-device copy of the weight
  {
    DevPtr dense = alloc(static_cast<size_t>(b.m * b.k) * es), pruned = alloc(static_cast<size_t>(b.m * b.k) * es);
    fill(dense->ptr(), t, b.m * b.k, 7, 0);
    r.copy_ms = median_ms([&] { copy_d2d(pruned->ptr(), dense->ptr(), static_cast<size_t>(b.m * b.k) * es); }, 2, 9);
    if (has_ours) {
      SelectOut so;
      so.pruned = pruned->ptr();
      r.prune_ms = median_ms([&] { nm_select(dense->ptr(), ours, b.m, b.k, 2, 4, so); }, 2, 9);  // 2:4
      // float32 needs 1:2 pairs for cuSPARSELt: compress the synthetic 1:2 weight instead of the 2:4-pruned one.
      const void* src = pattern == 2 ? w[0]->ptr() : pruned->ptr();
      if (slt_ok)
        r.compress_ms = median_ms([&] { DevPtr c = slt_compress(t, b.m, b.k, dense_align, src, nullptr); }, 2, 9);
    } else if (slt_ok) {
      r.compress_ms = median_ms([&] { DevPtr c = slt_compress(t, b.m, b.k, dense_align, w[0]->ptr(), nullptr); }, 2, 9);
    }
  }

  // sparse: Y[n, m] = X · Wᵀ with the linear layout of nm.linear
  SltProblem pr;
  pr.ab = t;
  pr.cd = cd;
  pr.compute = sc;
  pr.m = b.m;
  pr.n = b.n;
  pr.k = b.k;
  pr.b_nk = true;
  pr.d_col = true;
  SltPlan P;
  std::string where;
  std::vector<Timed> timed;  // the sparse plan first (when it builds), then cuBLASLt's heuristics, best first
  slt::Status run_st = slt::STATUS_SUCCESS;
  int sparse_it = 0;
  slt::Status st = slt_ok ? build_plan(P, pr, nullptr, &where) : slt::STATUS_NOT_INITIALIZED;
  if (!slt_ok) {
    r.sparse_error = slt::load().error;
  } else if (st != slt::STATUS_SUCCESS) {
    r.sparse_error = where + ": " + slt::status_text(st);
  } else {
    const float alpha = 1.f, beta = 0.f;
    cudaStream_t strm = stream();
    if (b.search) {
      st = slt::api().MatmulSearch(slt::handle(), P.plan.get(), &alpha, wc[0]->ptr(), x[0]->ptr(), &beta, ds->ptr(),
                                   ds->ptr(), workspace(std::max<size_t>(P.ws, 64u << 20)).ptr(), &strm, 1);
      sync();
      if (st == slt::STATUS_SUCCESS) slt::api().MatmulGetWorkspace(slt::handle(), P.plan.get(), &P.ws);
      else r.sparse_error = "cusparseLtMatmulSearch: " + slt::status_text(st) + " (default algorithm timed)";
      if (st != slt::STATUS_SUCCESS) P.use_default_algorithm(&where);
    }
    int mode = 0;
    P.read_algorithm(&r.alg_id, &r.split_k, &mode);
    timed.push_back({-1, [&] {
      const int c = sparse_it++ % copies;
      const slt::Status s2 = run_plan(P, wc[c]->ptr(), x[c]->ptr(), ds->ptr(), nullptr);
      if (s2 != slt::STATUS_SUCCESS) run_st = s2;
    }});
  }

  // dense: cuBLASLt on the same (pruned) weights, TN, each of its top heuristics (the first is not always the fastest)
  RawDense rd;
  rd.in_t = t;
  rd.out_t = dense_out;
  rd.scale_t = scale;
  rd.compute = dc;
  rd.op1_t = true;
  rd.op2_t = false;
  rd.mm = b.m;
  rd.nn = b.n;
  rd.kk = b.k;
  rd.d = dd->ptr();
  int dense_it = 0;
  if (!blt::load().ok) {
    r.dense_error = blt::load().error;
  } else {
    for (int h = 0; h < kDenseHeuristics; ++h) {
      RawDense one = rd;
      one.heuristic = h;
      one.x1 = w[0]->ptr();
      one.x2 = x[0]->ptr();
      try {
        dense_raw(one);  // plans it; E_UNSUPPORTED when cuBLASLt offers fewer kernels
      } catch (const Error& e) {
        if (h == 0) r.dense_error = e.what();
        break;
      }
      timed.push_back({h, [&, h] {
        const int c = dense_it++ % copies;
        RawDense call = rd;
        call.heuristic = h;
        call.x1 = w[c]->ptr();
        call.x2 = x[c]->ptr();
        dense_raw(call);
      }});
    }
  }

  // Interleaved rounds: clocks ramp up under load (345 -> 1980 MHz seen on an H200), so every round times each
  // candidate once, back to back. Each sample is `batch` calls between one pair of events: a small GEMM takes less
  // GPU time than one call's host cost, and an event pair per call would time the host. Medians over the rounds.
  if (!timed.empty()) {
    for (auto& c : timed)
      for (int i = 0; i < b.warmup; ++i) c.call();
    cudaEvent_t e0, e1;
    NMS_CUDA(cudaEventCreate(&e0));
    NMS_CUDA(cudaEventCreate(&e1));
    auto sample = [&](Timed& c, int batch) {
      NMS_CUDA(cudaEventRecord(e0, stream()));
      for (int i = 0; i < batch; ++i) c.call();
      NMS_CUDA(cudaEventRecord(e1, stream()));
      NMS_CUDA(cudaEventSynchronize(e1));
      float ms = 0;
      NMS_CUDA(cudaEventElapsedTime(&ms, e0, e1));
      return static_cast<double>(ms) / batch;
    };
    const double estimate = sample(timed[0], 4);
    r.batch = static_cast<int>(std::clamp(std::ceil(1.0 / std::max(estimate, 1e-6)), 1.0, 2000.0));  // >= ~1 ms
    std::vector<std::vector<double>> samples(timed.size());
    for (int round = 0; round < b.iters; ++round)
      for (size_t i = 0; i < timed.size(); ++i) samples[i].push_back(sample(timed[i], r.batch));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    r.rounds = b.iters;
    for (size_t i = 0; i < timed.size(); ++i) {
      std::sort(samples[i].begin(), samples[i].end());
      const double med = samples[i][samples[i].size() / 2];
      if (timed[i].heuristic < 0) {
        r.sparse_ms = med;
      } else {
        r.dense_heuristics += 1;
        if (r.dense_ms < 0 || med < r.dense_ms) {
          r.dense_ms = med;
          r.dense_heuristic = timed[i].heuristic;
        }
      }
    }
  }
  if (run_st != slt::STATUS_SUCCESS) {
    r.sparse_error = "cusparseLtMatmul: " + slt::status_text(run_st);
    r.sparse_ms = -1;
  }
  // copy 0's results, for the comparison
  if (r.sparse_ms >= 0) run_plan(P, wc[0]->ptr(), x[0]->ptr(), ds->ptr(), nullptr);
  if (r.dense_ms >= 0) {
    rd.x1 = w[0]->ptr();
    rd.x2 = x[0]->ptr();
    dense_raw(rd);
  }
  if (r.sparse_ms >= 0 && r.dense_ms >= 0) {
    DevPtr out = alloc_zeroed(2 * sizeof(unsigned));
    diff_kernel<<<1024, 256, 0, stream()>>>(ds->ptr(), dd->ptr(), static_cast<int>(cd), b.m * b.n, out->as<unsigned>());
    check_launch("diff kernel");
    unsigned h[2] = {0, 0};
    download(h, out->ptr(), sizeof h);
    float md, mb;
    std::memcpy(&md, &h[0], 4);
    std::memcpy(&mb, &h[1], 4);
    r.max_rel_err = mb > 0 ? md / mb : md;
  }
  return r;
}

}  // namespace nms::cuda
