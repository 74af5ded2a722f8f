// Compile-time check of our cuBLASLt declarations (cublaslt.h) against a real cublasLt.h, when the build finds one
// (NMSPARSE_CHECK_CUBLASLT_H): entry-point types, the enum values we pass, and the heuristic-result layout.
#if defined(NMSPARSE_CHECK_CUBLASLT_H)
#include <cublasLt.h>

#include <cstddef>
#include <type_traits>

#include "cuda/cublaslt.h"

namespace nms::cuda::blt::check_header {

template <class T> struct Real { using type = T; };
template <class T> using real_t = typename Real<T>::type;
template <class T> struct Real<T*> { using type = real_t<T>*; };
template <class T> struct Real<const T> { using type = const real_t<T>; };
template <class R, class... A> struct Real<R (*)(A...)> { using type = real_t<R> (*)(real_t<A>...); };
template <> struct Real<Context> { using type = cublasLtContext; };
template <> struct Real<MatmulDescOpaque> { using type = cublasLtMatmulDescOpaque_t; };
template <> struct Real<MatrixLayoutOpaque> { using type = cublasLtMatrixLayoutOpaque_t; };
template <> struct Real<MatmulPreferenceOpaque> { using type = cublasLtMatmulPreferenceOpaque_t; };
template <> struct Real<MatmulAlgo> { using type = cublasLtMatmulAlgo_t; };
template <> struct Real<HeuristicResult> { using type = cublasLtMatmulHeuristicResult_t; };
template <> struct Real<Status> { using type = cublasStatus_t; };
template <> struct Real<ComputeType> { using type = cublasComputeType_t; };
template <> struct Real<MatmulDescAttribute> { using type = cublasLtMatmulDescAttributes_t; };
template <> struct Real<MatrixLayoutAttribute> { using type = cublasLtMatrixLayoutAttribute_t; };
template <> struct Real<MatmulPreferenceAttribute> { using type = cublasLtMatmulPreferenceAttributes_t; };

#define NMS_SAME_SIGNATURE(pfn, fn)                                                        \
  static_assert(std::is_same_v<real_t<pfn>, decltype(&::fn)>,                             \
                "nmsparse's declaration of " #fn " (native/cuda/cublaslt.h) does not match cublasLt.h")
NMS_SAME_SIGNATURE(PFN_Create, cublasLtCreate);
NMS_SAME_SIGNATURE(PFN_GetVersion, cublasLtGetVersion);
NMS_SAME_SIGNATURE(PFN_GetStatusString, cublasLtGetStatusString);
NMS_SAME_SIGNATURE(PFN_MatmulDescCreate, cublasLtMatmulDescCreate);
NMS_SAME_SIGNATURE(PFN_MatmulDescDestroy, cublasLtMatmulDescDestroy);
NMS_SAME_SIGNATURE(PFN_MatmulDescSetAttribute, cublasLtMatmulDescSetAttribute);
NMS_SAME_SIGNATURE(PFN_MatrixLayoutCreate, cublasLtMatrixLayoutCreate);
NMS_SAME_SIGNATURE(PFN_MatrixLayoutDestroy, cublasLtMatrixLayoutDestroy);
NMS_SAME_SIGNATURE(PFN_MatmulPreferenceCreate, cublasLtMatmulPreferenceCreate);
NMS_SAME_SIGNATURE(PFN_MatmulPreferenceDestroy, cublasLtMatmulPreferenceDestroy);
NMS_SAME_SIGNATURE(PFN_MatmulPreferenceSetAttribute, cublasLtMatmulPreferenceSetAttribute);
NMS_SAME_SIGNATURE(PFN_MatmulAlgoGetHeuristic, cublasLtMatmulAlgoGetHeuristic);
NMS_SAME_SIGNATURE(PFN_Matmul, cublasLtMatmul);
#undef NMS_SAME_SIGNATURE

#define NMS_SAME_VALUE(ours, theirs) \
  static_assert(static_cast<long>(ours) == static_cast<long>(theirs), #ours " != " #theirs " in cublasLt.h")
NMS_SAME_VALUE(STATUS_SUCCESS, CUBLAS_STATUS_SUCCESS);
NMS_SAME_VALUE(STATUS_NOT_INITIALIZED, CUBLAS_STATUS_NOT_INITIALIZED);
NMS_SAME_VALUE(STATUS_ALLOC_FAILED, CUBLAS_STATUS_ALLOC_FAILED);
NMS_SAME_VALUE(STATUS_INVALID_VALUE, CUBLAS_STATUS_INVALID_VALUE);
NMS_SAME_VALUE(STATUS_ARCH_MISMATCH, CUBLAS_STATUS_ARCH_MISMATCH);
NMS_SAME_VALUE(STATUS_EXECUTION_FAILED, CUBLAS_STATUS_EXECUTION_FAILED);
NMS_SAME_VALUE(STATUS_INTERNAL_ERROR, CUBLAS_STATUS_INTERNAL_ERROR);
NMS_SAME_VALUE(STATUS_NOT_SUPPORTED, CUBLAS_STATUS_NOT_SUPPORTED);
NMS_SAME_VALUE(COMPUTE_32F, CUBLAS_COMPUTE_32F);
NMS_SAME_VALUE(COMPUTE_32F_FAST_TF32, CUBLAS_COMPUTE_32F_FAST_TF32);
NMS_SAME_VALUE(COMPUTE_32I, CUBLAS_COMPUTE_32I);
NMS_SAME_VALUE(OP_N, CUBLAS_OP_N);
NMS_SAME_VALUE(OP_T, CUBLAS_OP_T);
NMS_SAME_VALUE(MATMUL_DESC_COMPUTE_TYPE, CUBLASLT_MATMUL_DESC_COMPUTE_TYPE);
NMS_SAME_VALUE(MATMUL_DESC_SCALE_TYPE, CUBLASLT_MATMUL_DESC_SCALE_TYPE);
NMS_SAME_VALUE(MATMUL_DESC_POINTER_MODE, CUBLASLT_MATMUL_DESC_POINTER_MODE);
NMS_SAME_VALUE(MATMUL_DESC_TRANSA, CUBLASLT_MATMUL_DESC_TRANSA);
NMS_SAME_VALUE(MATMUL_DESC_TRANSB, CUBLASLT_MATMUL_DESC_TRANSB);
NMS_SAME_VALUE(MATMUL_DESC_EPILOGUE, CUBLASLT_MATMUL_DESC_EPILOGUE);
NMS_SAME_VALUE(MATMUL_DESC_BIAS_POINTER, CUBLASLT_MATMUL_DESC_BIAS_POINTER);
NMS_SAME_VALUE(MATMUL_DESC_BIAS_DATA_TYPE, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE);
NMS_SAME_VALUE(MATRIX_LAYOUT_TYPE, CUBLASLT_MATRIX_LAYOUT_TYPE);
NMS_SAME_VALUE(MATRIX_LAYOUT_ORDER, CUBLASLT_MATRIX_LAYOUT_ORDER);
NMS_SAME_VALUE(MATMUL_PREF_SEARCH_MODE, CUBLASLT_MATMUL_PREF_SEARCH_MODE);
NMS_SAME_VALUE(MATMUL_PREF_MAX_WORKSPACE_BYTES, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES);
NMS_SAME_VALUE(EPILOGUE_DEFAULT, CUBLASLT_EPILOGUE_DEFAULT);
NMS_SAME_VALUE(EPILOGUE_RELU, CUBLASLT_EPILOGUE_RELU);
NMS_SAME_VALUE(EPILOGUE_BIAS, CUBLASLT_EPILOGUE_BIAS);
NMS_SAME_VALUE(EPILOGUE_RELU_BIAS, CUBLASLT_EPILOGUE_RELU_BIAS);
#undef NMS_SAME_VALUE

static_assert(sizeof(HeuristicResult) == sizeof(cublasLtMatmulHeuristicResult_t) &&
                  offsetof(HeuristicResult, workspaceSize) == offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize) &&
                  offsetof(HeuristicResult, state) == offsetof(cublasLtMatmulHeuristicResult_t, state),
              "cublasLtMatmulHeuristicResult_t layout differs from ours");
static_assert(sizeof(MatmulAlgo) == sizeof(cublasLtMatmulAlgo_t), "cublasLtMatmulAlgo_t size differs");

}  // namespace nms::cuda::blt::check_header
#endif
