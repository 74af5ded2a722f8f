// Compile-time check of our cuSPARSELt declarations (cusparselt.h) against a real cusparseLt.h, when the build
// finds one (CMake defines NMSPARSE_CHECK_CUSPARSELT_H and adds its directory). Every entry point's type is
// rewritten from our types to the header's and compared with decltype(&function); every enum value we use is
// compared; the opaque objects we allocate must be at least as large and as aligned as the header's.
// Nothing here runs: an empty translation unit when there is no header.
#if defined(NMSPARSE_CHECK_CUSPARSELT_H)
#if __has_include(<cusparse.h>)
#include <cusparseLt.h>

#include <type_traits>

#include "cuda/cusparselt.h"

namespace nms::cuda::slt::check_header {

// Our type -> the header's type.
template <class T> struct Real { using type = T; };
template <class T> using real_t = typename Real<T>::type;
template <class T> struct Real<T*> { using type = real_t<T>*; };
template <class T> struct Real<const T> { using type = const real_t<T>; };
template <class R, class... A> struct Real<R (*)(A...)> { using type = real_t<R> (*)(real_t<A>...); };
template <> struct Real<Handle> { using type = cusparseLtHandle_t; };
template <> struct Real<MatDescriptor> { using type = cusparseLtMatDescriptor_t; };
template <> struct Real<MatmulDescriptor> { using type = cusparseLtMatmulDescriptor_t; };
template <> struct Real<AlgSelection> { using type = cusparseLtMatmulAlgSelection_t; };
template <> struct Real<Plan> { using type = cusparseLtMatmulPlan_t; };
template <> struct Real<Status> { using type = cusparseStatus_t; };
template <> struct Real<Operation> { using type = cusparseOperation_t; };
template <> struct Real<Order> { using type = cusparseOrder_t; };
template <> struct Real<ComputeType> { using type = cusparseComputeType; };
template <> struct Real<Sparsity> { using type = cusparseLtSparsity_t; };
template <> struct Real<MatDescAttribute> { using type = cusparseLtMatDescAttribute_t; };
template <> struct Real<MatmulDescAttribute> { using type = cusparseLtMatmulDescAttribute_t; };
template <> struct Real<MatmulAlg> { using type = cusparseLtMatmulAlg_t; };
template <> struct Real<AlgAttribute> { using type = cusparseLtMatmulAlgAttribute_t; };
template <> struct Real<PruneAlg> { using type = cusparseLtPruneAlg_t; };

#define NMS_SAME_SIGNATURE(pfn, fn)                                                                            \
  static_assert(std::is_same_v<real_t<pfn>, decltype(&::fn)>,                                                 \
                "nmsparse's declaration of " #fn " (native/cuda/cusparselt.h) does not match cusparseLt.h")

NMS_SAME_SIGNATURE(PFN_Init, cusparseLtInit);
NMS_SAME_SIGNATURE(PFN_Destroy, cusparseLtDestroy);
NMS_SAME_SIGNATURE(PFN_GetVersion, cusparseLtGetVersion);
NMS_SAME_SIGNATURE(PFN_GetProperty, cusparseLtGetProperty);
NMS_SAME_SIGNATURE(PFN_DenseDescriptorInit, cusparseLtDenseDescriptorInit);
NMS_SAME_SIGNATURE(PFN_StructuredDescriptorInit, cusparseLtStructuredDescriptorInit);
NMS_SAME_SIGNATURE(PFN_MatDescriptorDestroy, cusparseLtMatDescriptorDestroy);
NMS_SAME_SIGNATURE(PFN_MatDescSetAttribute, cusparseLtMatDescSetAttribute);
NMS_SAME_SIGNATURE(PFN_MatmulDescriptorInit, cusparseLtMatmulDescriptorInit);
NMS_SAME_SIGNATURE(PFN_MatmulDescSetAttribute, cusparseLtMatmulDescSetAttribute);
NMS_SAME_SIGNATURE(PFN_MatmulAlgSelectionInit, cusparseLtMatmulAlgSelectionInit);
NMS_SAME_SIGNATURE(PFN_MatmulAlgSetAttribute, cusparseLtMatmulAlgSetAttribute);
NMS_SAME_SIGNATURE(PFN_MatmulAlgGetAttribute, cusparseLtMatmulAlgGetAttribute);
NMS_SAME_SIGNATURE(PFN_MatmulGetWorkspace, cusparseLtMatmulGetWorkspace);
NMS_SAME_SIGNATURE(PFN_MatmulPlanInit, cusparseLtMatmulPlanInit);
NMS_SAME_SIGNATURE(PFN_MatmulPlanDestroy, cusparseLtMatmulPlanDestroy);
NMS_SAME_SIGNATURE(PFN_Matmul, cusparseLtMatmul);
NMS_SAME_SIGNATURE(PFN_MatmulSearch, cusparseLtMatmulSearch);
NMS_SAME_SIGNATURE(PFN_SpMMAPruneCheck, cusparseLtSpMMAPruneCheck);
NMS_SAME_SIGNATURE(PFN_SpMMACompressedSize, cusparseLtSpMMACompressedSize);
NMS_SAME_SIGNATURE(PFN_SpMMACompress, cusparseLtSpMMACompress);
NMS_SAME_SIGNATURE(PFN_SpMMAPruneCheck2, cusparseLtSpMMAPruneCheck2);
NMS_SAME_SIGNATURE(PFN_SpMMACompressedSize2, cusparseLtSpMMACompressedSize2);
NMS_SAME_SIGNATURE(PFN_SpMMACompress2, cusparseLtSpMMACompress2);
#if CUSPARSELT_VERSION >= 800
NMS_SAME_SIGNATURE(PFN_GetErrorString, cusparseLtGetErrorString);
NMS_SAME_SIGNATURE(PFN_MatmulAlgSelectionDestroy, cusparseLtMatmulAlgSelectionDestroy);
#endif
#undef NMS_SAME_SIGNATURE

#define NMS_SAME_VALUE(ours, theirs) \
  static_assert(static_cast<long>(ours) == static_cast<long>(theirs), #ours " != " #theirs " in cusparseLt.h")
NMS_SAME_VALUE(STATUS_SUCCESS, CUSPARSE_STATUS_SUCCESS);
NMS_SAME_VALUE(STATUS_NOT_INITIALIZED, CUSPARSE_STATUS_NOT_INITIALIZED);
NMS_SAME_VALUE(STATUS_ALLOC_FAILED, CUSPARSE_STATUS_ALLOC_FAILED);
NMS_SAME_VALUE(STATUS_INVALID_VALUE, CUSPARSE_STATUS_INVALID_VALUE);
NMS_SAME_VALUE(STATUS_ARCH_MISMATCH, CUSPARSE_STATUS_ARCH_MISMATCH);
NMS_SAME_VALUE(STATUS_EXECUTION_FAILED, CUSPARSE_STATUS_EXECUTION_FAILED);
NMS_SAME_VALUE(STATUS_INTERNAL_ERROR, CUSPARSE_STATUS_INTERNAL_ERROR);
NMS_SAME_VALUE(STATUS_NOT_SUPPORTED, CUSPARSE_STATUS_NOT_SUPPORTED);
NMS_SAME_VALUE(STATUS_INSUFFICIENT_RESOURCES, CUSPARSE_STATUS_INSUFFICIENT_RESOURCES);
NMS_SAME_VALUE(OP_N, CUSPARSE_OPERATION_NON_TRANSPOSE);
NMS_SAME_VALUE(OP_T, CUSPARSE_OPERATION_TRANSPOSE);
NMS_SAME_VALUE(ORDER_COL, CUSPARSE_ORDER_COL);
NMS_SAME_VALUE(ORDER_ROW, CUSPARSE_ORDER_ROW);
NMS_SAME_VALUE(COMPUTE_32I, CUSPARSE_COMPUTE_32I);
NMS_SAME_VALUE(COMPUTE_16F, CUSPARSE_COMPUTE_16F);
NMS_SAME_VALUE(COMPUTE_32F, CUSPARSE_COMPUTE_32F);
NMS_SAME_VALUE(SPARSITY_50_PERCENT, CUSPARSELT_SPARSITY_50_PERCENT);
NMS_SAME_VALUE(MAT_NUM_BATCHES, CUSPARSELT_MAT_NUM_BATCHES);
NMS_SAME_VALUE(MAT_BATCH_STRIDE, CUSPARSELT_MAT_BATCH_STRIDE);
NMS_SAME_VALUE(MATMUL_ACTIVATION_RELU, CUSPARSELT_MATMUL_ACTIVATION_RELU);
NMS_SAME_VALUE(MATMUL_ACTIVATION_RELU_UPPERBOUND, CUSPARSELT_MATMUL_ACTIVATION_RELU_UPPERBOUND);
NMS_SAME_VALUE(MATMUL_ACTIVATION_RELU_THRESHOLD, CUSPARSELT_MATMUL_ACTIVATION_RELU_THRESHOLD);
NMS_SAME_VALUE(MATMUL_ACTIVATION_GELU, CUSPARSELT_MATMUL_ACTIVATION_GELU);
NMS_SAME_VALUE(MATMUL_ACTIVATION_GELU_SCALING, CUSPARSELT_MATMUL_ACTIVATION_GELU_SCALING);
NMS_SAME_VALUE(MATMUL_ALPHA_VECTOR_SCALING, CUSPARSELT_MATMUL_ALPHA_VECTOR_SCALING);
NMS_SAME_VALUE(MATMUL_BETA_VECTOR_SCALING, CUSPARSELT_MATMUL_BETA_VECTOR_SCALING);
NMS_SAME_VALUE(MATMUL_BIAS_STRIDE, CUSPARSELT_MATMUL_BIAS_STRIDE);
NMS_SAME_VALUE(MATMUL_BIAS_POINTER, CUSPARSELT_MATMUL_BIAS_POINTER);
NMS_SAME_VALUE(MATMUL_SPARSE_MAT_POINTER, CUSPARSELT_MATMUL_SPARSE_MAT_POINTER);
NMS_SAME_VALUE(MATMUL_ALG_DEFAULT, CUSPARSELT_MATMUL_ALG_DEFAULT);
NMS_SAME_VALUE(MATMUL_ALG_CONFIG_ID, CUSPARSELT_MATMUL_ALG_CONFIG_ID);
NMS_SAME_VALUE(MATMUL_ALG_CONFIG_MAX_ID, CUSPARSELT_MATMUL_ALG_CONFIG_MAX_ID);
NMS_SAME_VALUE(MATMUL_SEARCH_ITERATIONS, CUSPARSELT_MATMUL_SEARCH_ITERATIONS);
NMS_SAME_VALUE(MATMUL_SPLIT_K, CUSPARSELT_MATMUL_SPLIT_K);
NMS_SAME_VALUE(MATMUL_SPLIT_K_MODE, CUSPARSELT_MATMUL_SPLIT_K_MODE);
NMS_SAME_VALUE(MATMUL_SPLIT_K_BUFFERS, CUSPARSELT_MATMUL_SPLIT_K_BUFFERS);
NMS_SAME_VALUE(PRUNE_SPMMA_TILE, CUSPARSELT_PRUNE_SPMMA_TILE);
NMS_SAME_VALUE(PRUNE_SPMMA_STRIP, CUSPARSELT_PRUNE_SPMMA_STRIP);
#undef NMS_SAME_VALUE

// Enums travel as 32-bit integers in the x86-64 / aarch64 calling conventions.
static_assert(sizeof(cusparseComputeType) == sizeof(ComputeType) && sizeof(cusparseStatus_t) == sizeof(Status),
              "enum sizes differ from cusparseLt.h");
#define NMS_FITS(ours, theirs)                                                                           \
  static_assert(sizeof(theirs) <= sizeof(ours) && alignof(theirs) <= alignof(ours), "opaque " #theirs \
                                                                                     " is larger than our storage")
NMS_FITS(Handle, cusparseLtHandle_t);
NMS_FITS(MatDescriptor, cusparseLtMatDescriptor_t);
NMS_FITS(MatmulDescriptor, cusparseLtMatmulDescriptor_t);
NMS_FITS(AlgSelection, cusparseLtMatmulAlgSelection_t);
NMS_FITS(Plan, cusparseLtMatmulPlan_t);
#undef NMS_FITS
static_assert(CUSPARSELT_VERSION >= kMinVersion, "the cusparseLt.h found is older than the minimum nmsparse accepts");

}  // namespace nms::cuda::slt::check_header
#else
#warning "nmsparse: cusparseLt.h found but cusparse.h is not on the include path; declaration check skipped"
#endif
#endif
