// Compressed N:M on the GPU. Two forms live side by side in a cuda SparseTensor (ops.h SparseMatrix):
//   * the portable form of core/nm_format.h (values + packed positions), bit-identical to the CPU's; it is what
//     decompress() reads and what .to('cpu') downloads, and it works for every N:M and dtype;
//   * the cuSPARSELt compressed buffer (opaque, per GPU and library version) of the same pruned weight, made
//     here (build_slt_form, slt_compress) where cuSPARSELt can take it, for sparse GEMM (spmm.cu).
// Why not keep the pruned dense copy for decompress(): the portable form is ~0.56x dense for 2:4 16-bit, so the
// two forms together hold ~1.1x the dense bytes instead of ~1.6x, and decompress stays exact by construction.
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/nm_format.h"
#include "cuda/internal.h"
#include "cuda/nm_kernels.cuh"
#include "cuda/ops.h"
#include "cuda/spmm_plan.h"

namespace nms::cuda {
namespace {

constexpr int kBlock = 256;

// One thread per group: writes all M outputs (zeros and the kept values), so `out` needs no clearing.
template <class T, int M>
__global__ void __launch_bounds__(kBlock) decompress_kernel(const T* __restrict__ values, const uint8_t* __restrict__ positions,
                                                            int64_t groups, int64_t groups_per_row, int n, int bits,
                                                            int64_t pos_row_bytes, T* __restrict__ out) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  const int64_t row = g / groups_per_row, gi = g - row * groups_per_row;
  const uint8_t* prow = positions + row * pos_row_bytes;
  kern::Group<T, M> grp;
#pragma unroll
  for (int i = 0; i < M; ++i) grp.v[i] = 0;
  for (int j = 0; j < n; ++j) {
    const int pos = nm_get_pos(prow, gi * n + j, bits);
    const T v = values[g * n + j];
    // Dynamic index into a register array: unrolled compare-select keeps it in registers.
#pragma unroll
    for (int i = 0; i < M; ++i)
      if (i == pos) grp.v[i] = v;
  }
  kern::store_group<T, M>(out + g * M, grp);
}

template <class T>
void launch_decompress(const void* values, const uint8_t* positions, int64_t rows, int64_t cols, int n, int m,
                       void* out) {
  const int64_t groups = rows * (cols / m);
  const int bits = nm_pos_bits(m);
  const int64_t prow = nm_pos_row_bytes(cols, n, m);
  NMS_DISPATCH_M(m, {
    decompress_kernel<T, kM><<<grid_for(groups, kBlock), kBlock, 0, stream()>>>(
        static_cast<const T*>(values), positions, groups, cols / m, n, bits, prow, static_cast<T*>(out));
  });
  check_launch("nm_decompress kernel");
}

// A new SparseMatrix of a [rows, cols] N:M weight of d, with no buffers yet (compress / from_portable fill them).
SparsePtr sparse_header(DType d, int64_t rows, int64_t cols, int n, int m) {
  auto s = std::make_shared<SparseMatrix>();
  s->dtype = d;
  s->rows = rows;
  s->cols = cols;
  s->n = n;
  s->m = m;
  return s;
}

}  // namespace

void nm_decompress(const void* values, const uint8_t* positions, DType d, int64_t rows, int64_t cols, int n, int m,
                   void* out) {
  activate();
  switch (dtype_size(d)) {
    case 4: launch_decompress<uint32_t>(values, positions, rows, cols, n, m, out); break;
    case 2: launch_decompress<uint16_t>(values, positions, rows, cols, n, m, out); break;
    default: launch_decompress<uint8_t>(values, positions, rows, cols, n, m, out); break;
  }
}

int64_t SparseMatrix::bytes() const {
  int64_t b = 0;
  for (const DevPtr* p : {&values, &positions, &slt_compressed, &dense_cache})
    if (*p) b += static_cast<int64_t>((*p)->bytes());
  return b;
}

DevPtr pad_matrix(const void* src, size_t es, int64_t rows, int64_t cols, int64_t rows_pad, int64_t cols_pad) {
  DevPtr dst = alloc_zeroed(static_cast<size_t>(rows_pad * cols_pad) * es);
  NMS_CUDA(cudaMemcpy2DAsync(dst->ptr(), cols_pad * es, src, cols * es, cols * es, rows, cudaMemcpyDeviceToDevice,
                             stream()));
  return dst;
}

namespace {
// compress(); with keep_pruned, the pruned dense weight of the same pass (as build_slt_form left it: −0.0 as +0.0)
// becomes the matrix's dense copy, else it is released, stream-ordered after the compression that reads it.
SparsePtr compress_impl(const void* w, DType d, int64_t rows, int64_t cols, int n, int m, bool keep_pruned) {
  activate();
  SparsePtr s = sparse_header(d, rows, cols, n, m);
  s->values = alloc(static_cast<size_t>(rows * nm_kept_per_row(cols, n, m)) * dtype_size(d));
  s->positions = alloc_zeroed(static_cast<size_t>(rows * nm_pos_row_bytes(cols, n, m)));
  const SltRules rules = slt_rules(d);
  DevPtr pruned;
  SelectOut out;
  out.values = s->values->ptr();
  out.positions = s->positions->as<uint8_t>();
  if (rules.supported || keep_pruned) {
    pruned = alloc(static_cast<size_t>(rows * cols) * dtype_size(d));
    out.pruned = pruned->ptr();
  }
  nm_select(w, d, rows, cols, n, m, out);  // one pass: portable form and the pruned dense weight
  if (rules.supported) build_slt_form(*s, pruned->ptr());
  else s->slt_reason = rules.why;
  if (keep_pruned) s->dense_cache = std::move(pruned);
  return s;
}
}  // namespace

SparsePtr compress(const void* w, DType d, int64_t rows, int64_t cols, int n, int m) {
  return compress_impl(w, d, rows, cols, n, m, false);
}

SparsePtr from_portable(DevPtr values, DevPtr positions, DType d, int64_t rows, int64_t cols, int n, int m) {
  activate();
  SparsePtr s = sparse_header(d, rows, cols, n, m);
  s->values = std::move(values);
  s->positions = std::move(positions);
  const SltRules rules = slt_rules(d);
  if (rules.supported) {
    DevPtr dense = alloc(static_cast<size_t>(rows * cols) * dtype_size(d));
    nm_decompress(s->values->ptr(), s->positions->as<uint8_t>(), d, rows, cols, n, m, dense->ptr());
    build_slt_form(*s, dense->ptr());
  } else {
    s->slt_reason = rules.why;
  }
  return s;
}

SparsePtr from_train_pass(DevPtr values, DevPtr positions, const DevPtr& eff, int64_t rows, int64_t cols, int n,
                          int m, DType d) {
  activate();
  SparsePtr s = sparse_header(d, rows, cols, n, m);
  s->values = std::move(values);
  s->positions = std::move(positions);
  // eff is this weight's dense pruned form: the dispatch's dense side multiplies it as it is (no decompression).
  s->dense_cache = eff;
  const SltRules rules = slt_rules(d);
  if (!rules.supported || n > rules.hw_n()) {
    // More than hw_n() kept per group (float32 2:M, 16-bit 3:M and denser): build_slt_form would test the pattern
    // against the hardware's with a host sync, every step, and such a trained weight breaks it almost surely
    // (adjacent kept pairs in float32, 3 or more kept in a group of 4 in 16 bits): skip it.
    s->slt_reason = !rules.supported ? rules.why
                                     : std::to_string(n) + ":" + std::to_string(m) + " " + dtype_name(d) +
                                           " does not meet cuSPARSELt's rule for it (" +
                                           (rules.pair_rule ? "1:2 pairs" : "2:4") +
                                           " along each row) by construction; its products run dense";
    return s;
  }
  // build_slt_form turns −0.0 into +0.0 in what it reads: give it a copy, eff stays the CPU's bits.
  const size_t bytes = static_cast<size_t>(rows * cols) * dtype_size(d);
  DevPtr scratch = alloc(bytes);
  copy_d2d(scratch->ptr(), eff->ptr(), bytes);
  build_slt_form(*s, scratch->ptr());
  return s;
}

SparsePtr transposed_train_form(const void* eff, DType d, int64_t rows, int64_t cols) {
  activate();
  DevPtr t = alloc(static_cast<size_t>(rows * cols) * dtype_size(d));
  transpose2d(eff, dtype_size(d), rows, cols, t->ptr());  // gemm.cu's
  // The dense copy is the pruned W̃ᵀ of the same pass, not t: both sides of the dispatch multiply one weight even
  // where a group of 4 along W̃ᵀ's rows held more than 2 non-zeros (a mask that was not transposable).
  return compress_impl(t->ptr(), d, cols, rows, 2, 4, true);  // t is released stream-ordered after the pass
}

// ---- the cuSPARSELt form -------------------------------------------------------------------------------------

namespace {

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
  const slt::Status s = p->build(pr, nullptr, &where);
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
  const int hw_n = rules.hw_n(), hw_m = rules.hw_m();
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

// ---- the dense copy ------------------------------------------------------------------------------------------

namespace {
std::mutex g_dense_copy_mu;  // SparseMatrix::dense_cache of every matrix
}

void drop_dense(SparseMatrix& s) {
  std::lock_guard<std::mutex> lock(g_dense_copy_mu);
  s.dense_cache.reset();
}

const void* dense_of(SparseMatrix& s) {
  std::lock_guard<std::mutex> lock(g_dense_copy_mu);
  if (!s.dense_cache) {
    DevPtr dense = alloc(static_cast<size_t>(s.rows * s.cols) * dtype_size(s.dtype));
    nm_decompress(s.values->ptr(), s.positions->as<uint8_t>(), s.dtype, s.rows, s.cols, s.n, s.m, dense->ptr());
    s.dense_cache = std::move(dense);
  }
  return s.dense_cache->ptr();
}

}  // namespace nms::cuda
