// The float64 check of a new plan's output (spmm.cu, step 3 of a cache entry; pytorch#155333 is why), and the
// comparison of two outputs the benchmarks report. Both read every dtype cuSPARSELt and cuBLASLt produce.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#include "cuda/internal.h"

namespace nms::cuda {
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

}  // namespace

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

double max_rel_diff(const void* a, const void* b, cudaDataType t, int64_t count) {
  DevPtr out = alloc_zeroed(2 * sizeof(unsigned));
  diff_kernel<<<1024, 256, 0, stream()>>>(a, b, static_cast<int>(t), count, out->as<unsigned>());
  check_launch("diff kernel");
  unsigned h[2] = {0, 0};
  download(h, out->ptr(), sizeof h);
  float md, mb;
  std::memcpy(&md, &h[0], 4);
  std::memcpy(&mb, &h[1], 4);
  return mb > 0 ? md / mb : md;
}

}  // namespace nms::cuda
