// Benchmark helpers (bench/gpu, cuda/bench.h): the cached plan of nm.linear driven from a plain C++ loop, and
// sparse (cuSPARSELt) against dense (cuBLASLt) GEMM on synthetic data of every type either takes.
#include "cuda/bench.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "cuda/internal.h"
#include "cuda/spmm_plan.h"

namespace nms::cuda {

NativeLoopResult bench_native_loop(const SparseGemm& g, int iters) {
  NativeLoopResult r;
  r.iters = iters;
  r.path = "dense";
  with_cached_plan(g, [&](SltPlan& P) {
    r.path = "sparse";
    // The raw loop: operands already in cuSPARSELt's shape, one cusparseLtMatmul per iteration, nothing else.
    const SltProblem& pr = P.pr;
    // The caller's own operand (padded as run_sparse() pads it), not zeros: zeros run faster than real data.
    DevPtr bt, bp;
    const void* b_op = prepare_b(P, g, bt, bp);
    DevPtr d_op = alloc(static_cast<size_t>(pr.m * pr.n) * type_size(pr.cd));
    DevPtr bias_op = pr.bias ? alloc_zeroed(static_cast<size_t>(pr.m) * type_size(pr.ab)) : nullptr;
    const void* bias = bias_op ? bias_op->ptr() : nullptr;
    const void* a = g.s->slt_compressed->ptr();
    for (int i = 0; i < 3; ++i) NMS_SLT(P.run(a, b_op, d_op->ptr(), bias));
    sync();
    cudaEvent_t e0, e1;
    NMS_CUDA(cudaEventCreate(&e0));
    NMS_CUDA(cudaEventCreate(&e1));
    NMS_CUDA(cudaEventRecord(e0, stream()));
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) NMS_SLT(P.run(a, b_op, d_op->ptr(), bias));
    const auto t1 = std::chrono::steady_clock::now();
    NMS_CUDA(cudaEventRecord(e1, stream()));
    NMS_CUDA(cudaEventSynchronize(e1));
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    r.ms_per_call_gpu = ms / iters;
    r.us_per_call_host = std::chrono::duration<double, std::micro>(t1 - t0).count() / iters;
  });
  return r;
}

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
    r.copy_ms = time_ms([&] { copy_d2d(pruned->ptr(), dense->ptr(), static_cast<size_t>(b.m * b.k) * es); }, 2, 9);
    if (has_ours) {
      SelectOut so;
      so.pruned = pruned->ptr();
      r.prune_ms = time_ms([&] { nm_select(dense->ptr(), ours, b.m, b.k, 2, 4, so); }, 2, 9);  // 2:4
      // float32 needs 1:2 pairs for cuSPARSELt: compress the synthetic 1:2 weight instead of the 2:4-pruned one.
      const void* src = pattern == 2 ? w[0]->ptr() : pruned->ptr();
      if (slt_ok)
        r.compress_ms = time_ms([&] { DevPtr c = slt_compress(t, b.m, b.k, dense_align, src, nullptr); }, 2, 9);
    } else if (slt_ok) {
      r.compress_ms = time_ms([&] { DevPtr c = slt_compress(t, b.m, b.k, dense_align, w[0]->ptr(), nullptr); }, 2, 9);
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
  slt::Status st = slt_ok ? P.build(pr, nullptr, &where) : slt::STATUS_NOT_INITIALIZED;
  if (!slt_ok) {
    r.sparse_error = slt::load().error;
  } else if (st != slt::STATUS_SUCCESS) {
    r.sparse_error = where + ": " + slt::status_text(st);
  } else {
    if (b.search) {
      st = P.search(wc[0]->ptr(), x[0]->ptr(), ds->ptr());
      if (st != slt::STATUS_SUCCESS) {
        r.sparse_error = "cusparseLtMatmulSearch: " + slt::status_text(st) + " (default algorithm timed)";
        P.use_default_algorithm(&where);
      }
    }
    int mode = 0;
    P.read_algorithm(&r.alg_id, &r.split_k, &mode);
    timed.push_back({-1, [&] {
      const int c = sparse_it++ % copies;
      const slt::Status s2 = P.run(wc[c]->ptr(), x[c]->ptr(), ds->ptr(), nullptr);
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
  if (r.sparse_ms >= 0) P.run(wc[0]->ptr(), x[0]->ptr(), ds->ptr(), nullptr);
  if (r.dense_ms >= 0) {
    rd.x1 = w[0]->ptr();
    rd.x2 = x[0]->ptr();
    dense_raw(rd);
  }
  if (r.sparse_ms >= 0 && r.dense_ms >= 0) r.max_rel_err = max_rel_diff(ds->ptr(), dd->ptr(), cd, b.m * b.n);
  return r;
}

}  // namespace nms::cuda
