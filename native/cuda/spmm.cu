// N:M-sparse × dense products on the GPU through cuSPARSELt: nm.linear(x, S) and S.matmul(B) for cuda
// SparseTensors. The CUDA twin of native/cpu/spmm.cc. This file is the plan cache and the dispatch of one call;
// the cuSPARSELt call sequence is spmm_plan.{h,cc}, the compression compress.cu, the float64 check
// spmm_verify.cu and the benchmarks spmm_bench.cu.
//
// Layouts (docs/design.md §10). The weight W̃ [rows, cols] is the structured operand A (row
// major, op N), so its 2:4 groups run along K as cuSPARSELt requires.
//   linear  Y[p, rows] = X[p, cols] · W̃ᵀ : B = X described as [p, cols] row-major with op T (K contiguous, as the
//           8-bit kernels require), D column-major [rows, p], which in memory is exactly row-major Y.
//   matmul  Y[rows, p] = W̃ · B[cols, p]  : B row-major with op N, D row-major (int8: B is transposed first).
// Shapes cuSPARSELt cannot take are padded with zeros (exact): rows/cols of W̃ at compression time, p per call.
//
// Plans are cached per (kind, dtype, padded shape, fused epilogue). The first call of a key makes its entry in
// four steps (create_entry): plan, one cusparseLtMatmulSearch, a check of the winner against a float64
// reference computed from the pruned weight (some algorithm IDs have returned wrong results: pytorch#155333)
// with the default algorithm as the fallback, and a timing of the sparse plan against cuBLASLt on the same
// pruned weight that keeps the faster path for that key ("never slower than dense"). Everything after the first
// call only enqueues.
//
// Locks. The first call of a shape holds the cache lock (g_plans_mu) through search, verification and timing:
// a second thread with the same key waits for the finished entry instead of searching again, and a plan's
// descriptor (whose bias pointer every call sets) is never used by two threads at once. The order, outermost
// first: g_plans_mu → g_blt_plans_mu (gemm.cu: cuBLASLt's plans, for run_dense) → the workspace lock (device.cc:
// held until the library call that uses the workspace is enqueued); and g_plans_mu → g_dense_copy_mu
// (compress.cu: held only while the dense copy is found or made, nothing taken under it). The library handles'
// locks (slt::handle(), blt::handle()) are leaves. Compression (compress.cu: g_compress_mu → the once-per-type
// check's lock; the descriptor cache's lock) never runs under the cache lock.
//
// Knobs (environment): NMSPARSE_CUDA_DISPATCH=auto|sparse|dense, NMSPARSE_CUSPARSELT_SEARCH=1|0,
// NMSPARSE_CUDA_VERIFY=1|0; for tests only, NMSPARSE_TEST_PLAN_CACHE (below).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/internal.h"
#include "cuda/ops.h"
#include "cuda/spmm_plan.h"

namespace nms::cuda {
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

// NMSPARSE_TEST_PLAN_CACHE, for test/gpu only: comma-separated words that reach the cache's rare branches.
//   reject-winner  the first reference check of every new key fails as if the searched algorithm were wrong, so
//                  the key is re-planned with the default algorithm and checked again;
//   reject-all     every reference check fails (the winner's, then the default algorithm's), so the key falls
//                  back to dense;
//   capacity=N     the cache holds at most N keys (default 1024) and is emptied when a new key would exceed it.
// The rejections apply where the check runs (NMSPARSE_CUDA_VERIFY is not 0).
struct TestKnob {
  bool reject_winner = false, reject_all = false;
  size_t capacity = 1024;  // a bound on host memory for programs with endless shapes
};
TestKnob test_knob() {
  TestKnob k;
  const char* v = std::getenv("NMSPARSE_TEST_PLAN_CACHE");
  if (!v) return k;
  std::stringstream words(v);
  std::string w;
  while (std::getline(words, w, ',')) {
    if (w.empty()) continue;
    if (w == "reject-winner") k.reject_winner = true;
    else if (w == "reject-all") k.reject_all = true;
    else if (w.rfind("capacity=", 0) == 0 && w.size() > 9 && std::strspn(w.c_str() + 9, "0123456789") == w.size() - 9 &&
             std::atoll(w.c_str() + 9) >= 1)
      k.capacity = static_cast<size_t>(std::atoll(w.c_str() + 9));
    else
      fail("E_VALUE", "NMSPARSE_TEST_PLAN_CACHE: got \"" + w + "\", expected reject-winner, reject-all or capacity=N (N >= 1)");
  }
  return k;
}

// ---- one call, on either path -------------------------------------------------------------------------------------

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

}  // namespace

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

namespace {

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
  NMS_SLT(P.run(s.slt_compressed->ptr(), B, D, bias));
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

// ---- the plan cache --------------------------------------------------------------------------------------------

struct Entry {
  std::unique_ptr<SltPlan> slt;  // null when the key runs dense
  bool use_sparse = false;
  PlanInfo info;
};

std::mutex g_plans_mu;  // the lock order: the comment at the top of this file
std::map<std::string, std::unique_ptr<Entry>>& g_plans = *new std::map<std::string, std::unique_ptr<Entry>>();  // never destroyed

// The four steps of create_entry. Each returns why the key must run dense, or "" to go on.

// 1. The plan, with the epilogue fused when cuSPARSELt takes it.
std::string plan_step(Entry& e, const SparseGemm& g, SltProblem pr) {
  std::string where;
  auto plan = std::make_unique<SltPlan>();
  slt::Status st = plan->build(pr, g.bias, &where);
  if (st != slt::STATUS_SUCCESS && (pr.bias || pr.relu)) {
    e.info.reason = "fused epilogue refused (" + where + ": " + slt::status_text(st) + "); ";
    pr.bias = pr.relu = false;
    plan = std::make_unique<SltPlan>();
    st = plan->build(pr, nullptr, &where);
  }
  if (st == slt::STATUS_ALLOC_FAILED || st == slt::STATUS_INSUFFICIENT_RESOURCES) slt::check(st, where.c_str());
  if (st != slt::STATUS_SUCCESS) return where + " failed: " + slt::status_text(st);
  e.info.max_alg_id = plan->max_alg_id;
  e.slt = std::move(plan);
  return "";
}

// 2. One search per key, on this call's operands, padded as run_sparse() passes them (the search writes D).
std::string search_step(Entry& e, const SparseGemm& g) {
  SltPlan& P = *e.slt;
  if (env_on("NMSPARSE_CUSPARSELT_SEARCH", true)) {
    const SparseMatrix& s = *g.s;
    const SltProblem& pr = P.pr;
    DevPtr bt, bp;
    const void* b_op = prepare_b(P, g, bt, bp);
    DevPtr d_op = alloc(static_cast<size_t>(pr.m * pr.n) * type_size(pr.cd));
    DevPtr bias_op;
    if (pr.bias) {
      bias_op = alloc_zeroed(static_cast<size_t>(pr.m) * dtype_size(s.dtype));
      copy_d2d(bias_op->ptr(), g.bias, static_cast<size_t>(s.rows) * dtype_size(s.dtype));
      NMS_SLT(P.set_bias(bias_op->ptr()));
    }
    const slt::Status ss = P.search(s.slt_compressed->ptr(), b_op, d_op->ptr());
    if (ss == slt::STATUS_SUCCESS) {
      e.info.searched = true;
    } else {
      e.info.reason += "cusparseLtMatmulSearch failed (" + slt::status_text(ss) + "), default algorithm used; ";
      std::string where;
      const slt::Status st = P.use_default_algorithm(&where);
      if (st != slt::STATUS_SUCCESS) return where + " failed: " + slt::status_text(st);
    }
  }
  P.read_algorithm(&e.info.alg_id, &e.info.split_k, &e.info.split_k_mode);
  e.info.workspace = P.ws;
  return "";
}

// 3. The chosen algorithm against the float64 reference, once; a winner other than the default algorithm that
// fails is replaced by the default one, which is checked in turn.
std::string verify_step(Entry& e, const SparseGemm& g, const TestKnob& knob) {
  if (!env_on("NMSPARSE_CUDA_VERIFY", true)) return "";
  SltPlan& P = *e.slt;
  const void* w = dense_of(*g.s);
  auto check = [&](bool winner) {
    run_sparse(P, g);
    std::string bad = verify_output(g, w);
    if (bad.empty() && (knob.reject_all || (winner && knob.reject_winner)))
      bad = "rejected by NMSPARSE_TEST_PLAN_CACHE";
    return bad;
  };
  std::string bad = check(true);
  const bool winner_is_default = e.info.alg_id == 0 && e.info.split_k <= 1;
  const bool knob_rejects = knob.reject_winner || knob.reject_all;  // re-plans even a default winner
  if (!bad.empty() && (!winner_is_default || knob_rejects)) {
    e.info.reason += "algorithm " + std::to_string(e.info.alg_id) + " (split-K " + std::to_string(e.info.split_k) +
                     ") gave a wrong result: " + bad + "; ";
    std::string where;
    const slt::Status st = P.use_default_algorithm(&where);
    if (st != slt::STATUS_SUCCESS) return where + " failed: " + slt::status_text(st);
    P.read_algorithm(&e.info.alg_id, &e.info.split_k, &e.info.split_k_mode);
    e.info.workspace = P.ws;
    bad = check(false);
  }
  if (!bad.empty()) return e.info.reason + "cuSPARSELt's result failed the reference check: " + bad;
  e.info.verified = true;
  return "";
}

// 4. Sparse or dense for this key: whichever is faster on this GPU (cuBLASLt on the same pruned weight).
void time_step(Entry& e, const SparseGemm& g, Dispatch mode) {
  SltPlan& P = *e.slt;
  e.use_sparse = true;
  e.info.path = "sparse";
  if (mode != Dispatch::Auto) return;
  if (!blt::load().ok) {
    e.info.reason += "cuBLASLt not loaded: no dense comparison";
    return;
  }
  e.info.sparse_ms = time_ms([&] { run_sparse(P, g); }, 2, 7);
  try {
    e.info.dense_ms = time_ms([&] { run_dense(g); }, 2, 7);
  } catch (const Error& ex) {
    if (ex.code != "E_UNSUPPORTED" && ex.code != "E_CUBLAS") throw;
    e.info.reason += std::string("no dense comparison: ") + ex.what() + "; ";
  }
  if (e.info.dense_ms >= 0 && e.info.dense_ms < e.info.sparse_ms) {
    e.use_sparse = false;
    e.info.path = "dense";
    e.info.reason += "cuBLASLt on the pruned weight was faster for this shape";
  }
}

// The first call of a key: plan → search → verify → time, then the call itself on the path chosen.
std::unique_ptr<Entry> create_entry(const SparseGemm& g, const SltProblem& want, const std::string& key,
                                    Dispatch mode) {
  auto e = std::make_unique<Entry>();
  e->info.key = key;
  std::string why_dense;
  if (mode == Dispatch::Dense) why_dense = "NMSPARSE_CUDA_DISPATCH=dense";
  if (why_dense.empty()) why_dense = plan_step(*e, g, want);
  if (why_dense.empty()) why_dense = search_step(*e, g);
  if (why_dense.empty()) why_dense = verify_step(*e, g, test_knob());
  if (!why_dense.empty()) {
    if (mode == Dispatch::Sparse) fail("E_CUSPARSELT", "NMSPARSE_CUDA_DISPATCH=sparse, but " + why_dense);
    e->slt.reset();
    e->info.path = "dense";
    e->info.reason = why_dense;
    run_dense_or_explain(g, why_dense);
    return e;
  }
  time_step(*e, g, mode);
  if (e->use_sparse) {
    run_sparse(*e->slt, g);
    drop_dense(*g.s);  // the dense copy was only for checking and timing
  } else {
    run_dense(g);
  }
  return e;
}

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
    if (g_plans.size() >= test_knob().capacity) g_plans.clear();  // eviction: all at once, rare by design
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
    g_plans.emplace(q.key, create_entry(g, q.pr, q.key, q.mode));
    return;  // create_entry ran the call
  }
  Entry& e = *it->second;
  if (e.use_sparse) run_sparse(*e.slt, g);
  else run_dense(g);
}

bool with_cached_plan(const SparseGemm& g, const std::function<void(SltPlan&)>& use) {
  sparse_gemm(g);  // makes (or finds) the key's entry
  const std::string key = prepare(g).key;
  std::lock_guard<std::mutex> lock(g_plans_mu);
  auto it = g_plans.find(key);
  if (it == g_plans.end() || !it->second->use_sparse) return false;
  use(*it->second->slt);
  return true;
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

}  // namespace nms::cuda
