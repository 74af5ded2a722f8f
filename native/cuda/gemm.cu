// Dense GEMM on the GPU through cuBLASLt (matmul / linear on 'cuda', and the dense side of nm.linear's dispatch),
// plus the small elementwise kernels the GEMM paths share: epilogue (bias + activation + dtype conversion) and
// 2-D transpose.
//
// Row-major C[m, n] = op(A) · op(B) is computed as the column-major product Cᵀ[n, m] = op(B)ᵀ · op(A)ᵀ, so the
// row-major buffers are passed as they are: B first, A second. linear(x, W) = matmul(x, W, transB) therefore
// becomes the "TN" case, the one int8 / float8 tensor-core kernels require.
#include <cuda_runtime.h>

#include <cmath>
#include <map>
#include <mutex>
#include <tuple>

#include "cuda/cublaslt.h"
#include "cuda/internal.h"
#include "cuda/nm_kernels.cuh"
#include "cuda/ops.h"

namespace nms::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt's recommendation for Hopper

// ---- elementwise ------------------------------------------------------------------------------------------------

// nms::store_from_f32 on the device, bit for bit (floats: round to nearest even; integers: round, saturate, NaN→0).
__device__ __forceinline__ void store_f32(void* p, DType d, int64_t i, float v) {
  switch (d) {
    case DType::F32: static_cast<float*>(p)[i] = v; return;
    case DType::F16: static_cast<__half*>(p)[i] = __float2half_rn(v); return;
    case DType::BF16: {
      const uint32_t x = __float_as_uint(v);
      uint16_t r;
      if ((x & 0x7fffffffu) > 0x7f800000u) r = static_cast<uint16_t>((x >> 16) | 0x40u);
      else r = static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
      static_cast<uint16_t*>(p)[i] = r;
      return;
    }
    case DType::I8: {
      float r = isnan(v) ? 0.f : nearbyintf(v);
      static_cast<int8_t*>(p)[i] = static_cast<int8_t>(r < -128.f ? -128.f : (r > 127.f ? 127.f : r));
      return;
    }
    default: {
      float r = isnan(v) ? 0.f : nearbyintf(v);
      static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(r < 0.f ? 0.f : (r > 255.f ? 255.f : r));
      return;
    }
  }
}

__device__ __forceinline__ float load_f32(const void* p, int kind, int64_t i) {
  switch (kind) {
    case kSrcInt32: return static_cast<float>(static_cast<const int32_t*>(p)[i]);
    case static_cast<int>(DType::F32): return static_cast<const float*>(p)[i];
    case static_cast<int>(DType::F16): return __half2float(static_cast<const __half*>(p)[i]);
    case static_cast<int>(DType::BF16): return __uint_as_float(static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16);
    case static_cast<int>(DType::I8): return static_cast<const int8_t*>(p)[i];
    default: return static_cast<const uint8_t*>(p)[i];
  }
}

__global__ void epilogue_kernel(EpilogueArgs e) {
  const int64_t total = e.rows * e.cols;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / e.cols, c = i - r * e.cols;
    float v = load_f32(e.src, e.src_kind, r * e.src_ld + c);
    if (e.bias) v += load_f32(e.bias, static_cast<int>(e.bias_dtype), e.bias_per_row ? r : c);
    if (e.act == Act::Relu) v = v > 0.f ? v : 0.f;
    else if (e.act == Act::Gelu) v = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    store_f32(e.dst, e.out_dtype, i, v);
  }
}

template <class T>
__global__ void transpose_kernel(const T* __restrict__ src, int64_t rows, int64_t cols, T* __restrict__ dst) {
  __shared__ T tile[32][33];
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * 32, r0 = static_cast<int64_t>(blockIdx.y) * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = src[r * cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t c = c0 + i, r = r0 + threadIdx.x;  // dst [cols, rows]
    if (c < cols && r < rows) dst[c * rows + r] = tile[threadIdx.x][i];
  }
}

// ---- cuBLASLt plans ---------------------------------------------------------------------------------------------

struct DenseKey {
  int in_t, out_t, compute, scale_t, bias_t;
  int64_t mm, nn, kk;
  bool op1_t, op2_t;
  int epilogue, heuristic;
  bool operator<(const DenseKey& o) const {
    return std::tie(in_t, out_t, compute, scale_t, bias_t, mm, nn, kk, op1_t, op2_t, epilogue, heuristic) <
           std::tie(o.in_t, o.out_t, o.compute, o.scale_t, o.bias_t, o.mm, o.nn, o.kk, o.op1_t, o.op2_t, o.epilogue,
                    o.heuristic);
  }
};

struct DensePlan {
  blt::MatmulDesc desc = nullptr;
  blt::MatrixLayout a = nullptr, b = nullptr, c = nullptr;
  blt::MatmulAlgo algo{};
  size_t workspace = 0;
  ~DensePlan() {
    const blt::Api& api = blt::api();
    if (desc) api.MatmulDescDestroy(desc);
    for (blt::MatrixLayout l : {a, b, c})
      if (l) api.MatrixLayoutDestroy(l);
  }
};

std::mutex g_blt_plans_mu;  // g_dense_plans and the plans' descriptors (lock order: spmm.cu)
// Never destroyed: at process exit the destructors would call into cuBLASLt after the runtime may be gone.
std::map<DenseKey, std::unique_ptr<DensePlan>>& g_dense_plans = *new std::map<DenseKey, std::unique_ptr<DensePlan>>();

std::unique_ptr<DensePlan> make_dense_plan(const RawDense& r) {
  const blt::Api& api = blt::api();
  auto p = std::make_unique<DensePlan>();
  NMS_BLT(api.MatmulDescCreate(&p->desc, r.compute, r.scale_t));
  const int32_t t1 = r.op1_t ? blt::OP_T : blt::OP_N, t2 = r.op2_t ? blt::OP_T : blt::OP_N;
  NMS_BLT(api.MatmulDescSetAttribute(p->desc, blt::MATMUL_DESC_TRANSA, &t1, sizeof t1));
  NMS_BLT(api.MatmulDescSetAttribute(p->desc, blt::MATMUL_DESC_TRANSB, &t2, sizeof t2));
  const int32_t e = r.epilogue;
  NMS_BLT(api.MatmulDescSetAttribute(p->desc, blt::MATMUL_DESC_EPILOGUE, &e, sizeof e));
  if (r.epilogue == blt::EPILOGUE_BIAS || r.epilogue == blt::EPILOGUE_RELU_BIAS) {
    const int32_t bt = r.bias_t;
    NMS_BLT(api.MatmulDescSetAttribute(p->desc, blt::MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
  }
  const int64_t r1 = r.op1_t ? r.kk : r.mm, c1 = r.op1_t ? r.mm : r.kk;
  const int64_t r2 = r.op2_t ? r.nn : r.kk, c2 = r.op2_t ? r.kk : r.nn;
  NMS_BLT(api.MatrixLayoutCreate(&p->a, r.in_t, r1, c1, r1));
  NMS_BLT(api.MatrixLayoutCreate(&p->b, r.in_t, r2, c2, r2));
  NMS_BLT(api.MatrixLayoutCreate(&p->c, r.out_t, r.mm, r.nn, r.mm));
  blt::MatmulPreference pref = nullptr;
  NMS_BLT(api.MatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  blt::Status st = api.MatmulPreferenceSetAttribute(pref, blt::MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  blt::HeuristicResult res[kDenseHeuristics] = {};
  int found = 0;
  if (st == blt::STATUS_SUCCESS)
    st = api.MatmulAlgoGetHeuristic(blt::handle(), p->desc, p->a, p->b, p->c, p->c, pref, kDenseHeuristics, res, &found);
  api.MatmulPreferenceDestroy(pref);
  if (st == blt::STATUS_NOT_SUPPORTED) found = 0;
  else NMS_BLT(st);
  int pick = -1;
  for (int i = 0, usable = 0; i < found; ++i)
    if (res[i].state == blt::STATUS_SUCCESS && usable++ == r.heuristic) {
      pick = i;
      break;
    }
  if (pick < 0 && r.heuristic > 0)
    fail("E_UNSUPPORTED", "cuBLASLt offers fewer than " + std::to_string(r.heuristic + 1) + " kernels for this GEMM");
  if (pick < 0)
    fail("E_UNSUPPORTED", "cuBLASLt has no kernel for this GEMM (output " + std::to_string(r.nn) + " x " +
                              std::to_string(r.mm) + ", reduction " + std::to_string(r.kk) +
                              "; 8-bit types need every dimension a multiple of 4 and the TN layout)");
  p->algo = res[pick].algo;
  p->workspace = res[pick].workspaceSize;
  return p;
}

template <class T>
void launch_transpose(const void* src, int64_t rows, int64_t cols, void* dst) {
  dim3 block(32, 8);
  dim3 grid(static_cast<unsigned>((cols + 31) / 32), static_cast<unsigned>((rows + 31) / 32));
  if (grid.y > 65535) fail("E_SHAPE", "transpose on 'cuda': more than 2,097,120 rows");
  transpose_kernel<T><<<grid, block, 0, stream()>>>(static_cast<const T*>(src), rows, cols, static_cast<T*>(dst));
  check_launch("transpose kernel");
}

}  // namespace

void transpose2d(const void* src, size_t es, int64_t rows, int64_t cols, void* dst) {
  activate();
  switch (es) {
    case 4: launch_transpose<uint32_t>(src, rows, cols, dst); break;
    case 2: launch_transpose<uint16_t>(src, rows, cols, dst); break;
    default: launch_transpose<uint8_t>(src, rows, cols, dst); break;
  }
}

void epilogue(const EpilogueArgs& e) {
  activate();
  const int64_t total = e.rows * e.cols;
  if (total == 0) return;
  unsigned blocks = grid_for(total, 256);
  if (blocks > 65536) blocks = 65536;
  epilogue_kernel<<<blocks, 256, 0, stream()>>>(e);
  check_launch("epilogue kernel");
}

void dense_raw(const RawDense& r) {
  activate();
  const blt::Api& api = blt::api();
  const DenseKey key{r.in_t, r.out_t, r.compute, r.scale_t, r.bias_t, r.mm, r.nn, r.kk, r.op1_t, r.op2_t, r.epilogue,
                     r.heuristic};
  std::lock_guard<std::mutex> lock(g_blt_plans_mu);  // held while the cached descriptor is updated and enqueued
  auto it = g_dense_plans.find(key);
  if (it == g_dense_plans.end()) {
    if (g_dense_plans.size() >= 512) g_dense_plans.clear();
    it = g_dense_plans.emplace(key, make_dense_plan(r)).first;
  }
  DensePlan* plan = it->second.get();
  if (r.epilogue == blt::EPILOGUE_BIAS || r.epilogue == blt::EPILOGUE_RELU_BIAS)
    NMS_BLT(api.MatmulDescSetAttribute(plan->desc, blt::MATMUL_DESC_BIAS_POINTER, &r.bias, sizeof(void*)));
  const bool int_scale = r.scale_t == CUDA_R_32I;
  const float alpha_f = 1.f, beta_f = 0.f;
  const int32_t alpha_i = 1, beta_i = 0;
  const void* alpha = int_scale ? static_cast<const void*>(&alpha_i) : &alpha_f;
  const void* beta = int_scale ? static_cast<const void*>(&beta_i) : &beta_f;
  const Workspace ws = workspace(kWorkspaceBytes);
  NMS_BLT(api.Matmul(blt::handle(), plan->desc, alpha, r.x1, plan->a, r.x2, plan->b, beta, r.d, plan->c, r.d, plan->c,
                     &plan->algo, ws.ptr(), kWorkspaceBytes, stream()));
}

void clear_dense_plans() {
  std::lock_guard<std::mutex> lock(g_blt_plans_mu);
  g_dense_plans.clear();
}

void dense_gemm(const DenseGemm& g) {
  activate();
  const bool is_int = g.dtype == DType::I8;
  if (!is_int && g.out_dtype != g.dtype)
    fail("E_DTYPE", std::string("dense GEMM on 'cuda': a ") + dtype_name(g.dtype) + " product is " +
                        dtype_name(g.dtype) + ", not " + dtype_name(g.out_dtype));
  const DType bias_dtype = is_int ? DType::F32 : g.dtype;
  // Our epilogue kernel: everything for int8 (int32 accumulators), GELU, and a per-row bias. cuBLASLt fuses the
  // rest (a per-column bias, ReLU) for floats.
  const bool fuse_bias = !is_int && g.bias && !g.bias_per_row;
  const bool fuse_relu = !is_int && g.act == Act::Relu && (fuse_bias || !g.bias);
  EpilogueArgs post{nullptr, 0, g.n, g.c, g.out_dtype, g.m, g.n};
  if (!fuse_bias && g.bias) {
    post.bias = g.bias;
    post.bias_dtype = bias_dtype;
    post.bias_per_row = g.bias_per_row;
  }
  if (!fuse_relu) post.act = g.act;
  const bool need_post = is_int || post.bias || post.act != Act::None;

  if (g.k == 0) {  // an empty reduction: C = act(bias)
    NMS_CUDA(cudaMemsetAsync(g.c, 0, static_cast<size_t>(g.m * g.n) * dtype_size(g.out_dtype), stream()));
    if (g.bias || g.act != Act::None) {
      EpilogueArgs e{g.c, static_cast<int>(g.out_dtype), g.n, g.c, g.out_dtype, g.m, g.n, g.bias, bias_dtype,
                     g.bias_per_row, g.act};
      epilogue(e);
    }
    return;
  }
  const void* a = g.a;
  const void* b = g.b;
  bool ta = g.trans_a, tb = g.trans_b;
  DevPtr ta_tmp, tb_tmp;
  if (is_int) {
    // Integer tensor cores take only the "TN" form: A stored [m, k], B stored [n, k].
    if (ta) {
      ta_tmp = alloc(static_cast<size_t>(g.m * g.k));
      transpose2d(a, 1, g.k, g.m, ta_tmp->ptr());
      a = ta_tmp->ptr();
      ta = false;
    }
    if (!tb) {
      tb_tmp = alloc(static_cast<size_t>(g.n * g.k));
      transpose2d(b, 1, g.k, g.n, tb_tmp->ptr());
      b = tb_tmp->ptr();
      tb = true;
    }
  }
  blt::Epilogue epi = blt::EPILOGUE_DEFAULT;
  if (fuse_bias) epi = fuse_relu ? blt::EPILOGUE_RELU_BIAS : blt::EPILOGUE_BIAS;
  else if (fuse_relu) epi = blt::EPILOGUE_RELU;
  DevPtr acc;
  void* d = g.c;
  if (is_int) {
    acc = alloc(static_cast<size_t>(g.m * g.n) * 4);
    d = acc->ptr();
  }
  RawDense r;
  r.in_t = cuda_data_type(g.dtype);
  r.out_t = is_int ? CUDA_R_32I : r.in_t;
  r.compute = is_int ? blt::COMPUTE_32I : (g.dtype == DType::F32 && g.tf32 ? blt::COMPUTE_32F_FAST_TF32 : blt::COMPUTE_32F);
  r.scale_t = is_int ? CUDA_R_32I : CUDA_R_32F;
  // Column-major problem: D[n, m] = op(B)ᵀ · op(A)ᵀ (see the top of this file).
  r.op1_t = tb;
  r.op2_t = ta;
  r.mm = g.n;
  r.nn = g.m;
  r.kk = g.k;
  r.epilogue = epi;
  r.bias = fuse_bias ? g.bias : nullptr;
  r.bias_t = r.in_t;
  r.x1 = b;
  r.x2 = a;
  r.d = d;
  dense_raw(r);
  if (need_post) {
    post.src = d;
    post.src_kind = is_int ? kSrcInt32 : static_cast<int>(g.dtype);
    epilogue(post);
  }
}

}  // namespace nms::cuda
