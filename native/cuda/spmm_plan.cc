// cuSPARSELt's per-dtype shape rules and the call sequence of one plan (spmm_plan.h; docs/design.md §10).
#include "cuda/spmm_plan.h"

#include <algorithm>

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

size_t type_size(cudaDataType t) {
  switch (t) {
    case CUDA_R_32F: case CUDA_R_32I: return 4;
    case CUDA_R_16F: case CUDA_R_16BF: return 2;
    default: return 1;
  }
}

SltPlan::~SltPlan() {
  if (!(a_ok || b_ok || c_ok || alg_ok || plan_ok)) return;  // nothing made (and cuSPARSELt perhaps not loaded)
  const slt::Api& api = slt::api();
  if (plan_ok) api.MatmulPlanDestroy(plan.get());
  if (alg_ok && api.MatmulAlgSelectionDestroy) api.MatmulAlgSelectionDestroy(alg.get());
  // (there is no destroy function for the matmul descriptor)
  if (c_ok) api.MatDescriptorDestroy(c.get());
  if (b_ok) api.MatDescriptorDestroy(b.get());
  if (a_ok) api.MatDescriptorDestroy(a.get());
}

slt::Status SltPlan::build(const SltProblem& problem, const void* bias, std::string* where) {
  const slt::Api& api = slt::api();
  const slt::Handle* h = slt::handle();
  pr = problem;
  slt::Status s = api.StructuredDescriptorInit(h, a.get(), pr.m, pr.k, pr.k, 16, pr.ab, slt::ORDER_ROW,
                                               slt::SPARSITY_50_PERCENT);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtStructuredDescriptorInit", s;
  a_ok = true;
  s = pr.b_nk ? api.DenseDescriptorInit(h, b.get(), pr.n, pr.k, pr.k, 16, pr.ab, slt::ORDER_ROW)
              : api.DenseDescriptorInit(h, b.get(), pr.k, pr.n, pr.n, 16, pr.ab, slt::ORDER_ROW);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtDenseDescriptorInit(B)", s;
  b_ok = true;
  s = pr.d_col ? api.DenseDescriptorInit(h, c.get(), pr.m, pr.n, pr.m, 16, pr.cd, slt::ORDER_COL)
               : api.DenseDescriptorInit(h, c.get(), pr.m, pr.n, pr.n, 16, pr.cd, slt::ORDER_ROW);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtDenseDescriptorInit(C)", s;
  c_ok = true;
  s = api.MatmulDescriptorInit(h, mm.get(), slt::OP_N, pr.b_nk ? slt::OP_T : slt::OP_N, a.get(), b.get(), c.get(),
                               c.get(), pr.compute);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulDescriptorInit", s;
  mm_ok = true;
  if (pr.relu) {
    const int32_t on = 1;
    s = api.MatmulDescSetAttribute(h, mm.get(), slt::MATMUL_ACTIVATION_RELU, &on, sizeof on);
    if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulDescSetAttribute(ACTIVATION_RELU)", s;
  }
  if (pr.bias) {
    s = set_bias(bias);
    if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulDescSetAttribute(BIAS_POINTER)", s;
  }
  s = api.MatmulAlgSelectionInit(h, alg.get(), mm.get(), slt::MATMUL_ALG_DEFAULT);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulAlgSelectionInit", s;
  alg_ok = true;
  api.MatmulAlgGetAttribute(h, alg.get(), slt::MATMUL_ALG_CONFIG_MAX_ID, &max_alg_id, sizeof(int));
  s = api.MatmulPlanInit(h, plan.get(), mm.get(), alg.get());
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulPlanInit", s;
  plan_ok = true;
  s = api.MatmulGetWorkspace(h, plan.get(), &ws);
  if (s != slt::STATUS_SUCCESS) return *where = "cusparseLtMatmulGetWorkspace", s;
  return slt::STATUS_SUCCESS;
}

slt::Status SltPlan::set_bias(const void* bias) {
  return slt::api().MatmulDescSetAttribute(slt::handle(), mm.get(), slt::MATMUL_BIAS_POINTER, &bias, sizeof(void*));
}

slt::Status SltPlan::search(const void* a_compressed, const void* b_op, void* d) {
  const slt::Api& api = slt::api();
  const slt::Handle* h = slt::handle();
  const float alpha = 1.f, beta = 0.f;
  cudaStream_t st = stream();
  // Workspace: the plan's own need or 64 MiB, whichever is larger (the search may try split-K variants).
  const size_t search_ws = std::max<size_t>(ws, 64u << 20);
  const slt::Status s = api.MatmulSearch(h, plan.get(), &alpha, a_compressed, b_op, &beta, d, d,
                                         workspace(search_ws).ptr(), &st, 1);
  sync();
  if (s == slt::STATUS_SUCCESS && api.MatmulGetWorkspace(h, plan.get(), &ws) != slt::STATUS_SUCCESS) ws = search_ws;
  return s;
}

slt::Status SltPlan::use_default_algorithm(std::string* where) {
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

void SltPlan::read_algorithm(int* config, int* split_k, int* split_k_mode) const {
  const slt::Api& api = slt::api();
  const slt::Handle* h = slt::handle();
  *config = *split_k = *split_k_mode = -1;
  api.MatmulAlgGetAttribute(h, alg.get(), slt::MATMUL_ALG_CONFIG_ID, config, sizeof(int));
  api.MatmulAlgGetAttribute(h, alg.get(), slt::MATMUL_SPLIT_K, split_k, sizeof(int));
  api.MatmulAlgGetAttribute(h, alg.get(), slt::MATMUL_SPLIT_K_MODE, split_k_mode, sizeof(int));
}

slt::Status SltPlan::run(const void* a_compressed, const void* b_op, void* d, const void* bias) {
  if (pr.bias) {
    const slt::Status s = set_bias(bias);
    if (s != slt::STATUS_SUCCESS) return s;
  }
  const float alpha = 1.f, beta = 0.f;
  cudaStream_t st = stream();
  return slt::api().Matmul(slt::handle(), plan.get(), &alpha, a_compressed, b_op, &beta, d, d,
                           workspace(ws).ptr(), &st, 1);  // the workspace is held until enqueued
}

}  // namespace nms::cuda
