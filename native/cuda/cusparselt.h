// cuSPARSELt, loaded at run time (dlopen, never linked), from our own declarations of the entry points we call.
// The declarations follow cusparseLt.h 0.6.x – 0.8.x (../shared/reference/cusparselt.md §1.2–1.4):
//   * the compute-type enum was renumbered in 0.5.2/0.6 (32I=0, 16F=1, 32F=2); we require >= 0.6.0, so the new
//     numbering is the only one we declare;
//   * the opaque objects are caller-allocated byte arrays whose size changed (13072 B in 0.6.2, 512 B aligned 16
//     in 0.8): we give each object kOpaqueBytes, aligned kOpaqueAlign, on the heap, and never move it (the plan
//     points into the matmul descriptor, which points into the matrix descriptors);
//   * AlgSelectionDestroy, GetErrorName/GetErrorString exist from 0.8.0 and are optional;
//   * the descriptor-only SpMMA*2 helpers are documented as deprecated in the newest docs: optional too.
// When the build finds a real cusparseLt.h (NMSPARSE_CHECK_CUSPARSELT_H), cusparselt_check.cc asserts at compile
// time that every declaration and enum value here matches it.
#pragma once
#include <driver_types.h>   // cudaStream_t
#include <library_types.h>  // cudaDataType, libraryPropertyType

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nms::cuda::slt {

constexpr size_t kOpaqueBytes = 16384;  // >= every known sizeof (13072 in 0.6.2)
constexpr size_t kOpaqueAlign = 64;     // >= alignas(16) of 0.8

struct alignas(kOpaqueAlign) Handle { uint8_t data[kOpaqueBytes]; };
struct alignas(kOpaqueAlign) MatDescriptor { uint8_t data[kOpaqueBytes]; };
struct alignas(kOpaqueAlign) MatmulDescriptor { uint8_t data[kOpaqueBytes]; };
struct alignas(kOpaqueAlign) AlgSelection { uint8_t data[kOpaqueBytes]; };
struct alignas(kOpaqueAlign) Plan { uint8_t data[kOpaqueBytes]; };

// cusparseStatus_t (cusparse.h)
enum Status : int {
  STATUS_SUCCESS = 0, STATUS_NOT_INITIALIZED = 1, STATUS_ALLOC_FAILED = 2, STATUS_INVALID_VALUE = 3,
  STATUS_ARCH_MISMATCH = 4, STATUS_MAPPING_ERROR = 5, STATUS_EXECUTION_FAILED = 6, STATUS_INTERNAL_ERROR = 7,
  STATUS_MATRIX_TYPE_NOT_SUPPORTED = 8, STATUS_ZERO_PIVOT = 9, STATUS_NOT_SUPPORTED = 10,
  STATUS_INSUFFICIENT_RESOURCES = 11,
};
// cusparseOperation_t, cusparseOrder_t (cusparse.h)
enum Operation : int { OP_N = 0, OP_T = 1 };
enum Order : int { ORDER_COL = 1, ORDER_ROW = 2 };
// cusparseComputeType (>= 0.6)
enum ComputeType : int { COMPUTE_32I = 0, COMPUTE_16F = 1, COMPUTE_32F = 2 };
enum Sparsity : int { SPARSITY_50_PERCENT = 0 };
enum MatDescAttribute : int { MAT_NUM_BATCHES = 0, MAT_BATCH_STRIDE = 1 };
enum MatmulDescAttribute : int {
  MATMUL_ACTIVATION_RELU = 0, MATMUL_ACTIVATION_RELU_UPPERBOUND = 1, MATMUL_ACTIVATION_RELU_THRESHOLD = 2,
  MATMUL_ACTIVATION_GELU = 3, MATMUL_ACTIVATION_GELU_SCALING = 4, MATMUL_ALPHA_VECTOR_SCALING = 5,
  MATMUL_BETA_VECTOR_SCALING = 6, MATMUL_BIAS_STRIDE = 7, MATMUL_BIAS_POINTER = 8, MATMUL_SPARSE_MAT_POINTER = 9,
};
enum MatmulAlg : int { MATMUL_ALG_DEFAULT = 0 };
enum AlgAttribute : int {
  MATMUL_ALG_CONFIG_ID = 0, MATMUL_ALG_CONFIG_MAX_ID = 1, MATMUL_SEARCH_ITERATIONS = 2, MATMUL_SPLIT_K = 3,
  MATMUL_SPLIT_K_MODE = 4, MATMUL_SPLIT_K_BUFFERS = 5,
};
enum PruneAlg : int { PRUNE_SPMMA_TILE = 0, PRUNE_SPMMA_STRIP = 1 };

// Entry-point types (one per function we call).
using PFN_Init = Status (*)(Handle*);
using PFN_Destroy = Status (*)(const Handle*);
using PFN_GetVersion = Status (*)(const Handle*, int*);
using PFN_GetProperty = Status (*)(libraryPropertyType, int*);
using PFN_GetErrorString = const char* (*)(Status);
using PFN_DenseDescriptorInit = Status (*)(const Handle*, MatDescriptor*, int64_t, int64_t, int64_t, uint32_t,
                                           cudaDataType, Order);
using PFN_StructuredDescriptorInit = Status (*)(const Handle*, MatDescriptor*, int64_t, int64_t, int64_t, uint32_t,
                                                cudaDataType, Order, Sparsity);
using PFN_MatDescriptorDestroy = Status (*)(const MatDescriptor*);
using PFN_MatDescSetAttribute = Status (*)(const Handle*, MatDescriptor*, MatDescAttribute, const void*, size_t);
using PFN_MatmulDescriptorInit = Status (*)(const Handle*, MatmulDescriptor*, Operation, Operation,
                                            const MatDescriptor*, const MatDescriptor*, const MatDescriptor*,
                                            const MatDescriptor*, ComputeType);
using PFN_MatmulDescSetAttribute = Status (*)(const Handle*, MatmulDescriptor*, MatmulDescAttribute, const void*,
                                              size_t);
using PFN_MatmulAlgSelectionInit = Status (*)(const Handle*, AlgSelection*, const MatmulDescriptor*, MatmulAlg);
using PFN_MatmulAlgSelectionDestroy = Status (*)(const AlgSelection*);
using PFN_MatmulAlgSetAttribute = Status (*)(const Handle*, AlgSelection*, AlgAttribute, const void*, size_t);
using PFN_MatmulAlgGetAttribute = Status (*)(const Handle*, const AlgSelection*, AlgAttribute, void*, size_t);
using PFN_MatmulGetWorkspace = Status (*)(const Handle*, const Plan*, size_t*);
using PFN_MatmulPlanInit = Status (*)(const Handle*, Plan*, const MatmulDescriptor*, const AlgSelection*);
using PFN_MatmulPlanDestroy = Status (*)(const Plan*);
using PFN_Matmul = Status (*)(const Handle*, const Plan*, const void*, const void*, const void*, const void*,
                              const void*, void*, void*, cudaStream_t*, int32_t);
using PFN_MatmulSearch = Status (*)(const Handle*, Plan*, const void*, const void*, const void*, const void*,
                                    const void*, void*, void*, cudaStream_t*, int32_t);
using PFN_SpMMAPruneCheck = Status (*)(const Handle*, const MatmulDescriptor*, const void*, int*, cudaStream_t);
using PFN_SpMMACompressedSize = Status (*)(const Handle*, const Plan*, size_t*, size_t*);
using PFN_SpMMACompress = Status (*)(const Handle*, const Plan*, const void*, void*, void*, cudaStream_t);
using PFN_SpMMAPruneCheck2 = Status (*)(const Handle*, const MatDescriptor*, int, Operation, const void*, int*,
                                        cudaStream_t);
using PFN_SpMMACompressedSize2 = Status (*)(const Handle*, const MatDescriptor*, size_t*, size_t*);
using PFN_SpMMACompress2 = Status (*)(const Handle*, const MatDescriptor*, int, Operation, const void*, void*, void*,
                                      cudaStream_t);

struct Api {
  PFN_Init Init = nullptr;
  PFN_Destroy Destroy = nullptr;
  PFN_GetVersion GetVersion = nullptr;
  PFN_GetProperty GetProperty = nullptr;
  PFN_GetErrorString GetErrorString = nullptr;  // optional (>= 0.8.0)
  PFN_DenseDescriptorInit DenseDescriptorInit = nullptr;
  PFN_StructuredDescriptorInit StructuredDescriptorInit = nullptr;
  PFN_MatDescriptorDestroy MatDescriptorDestroy = nullptr;
  PFN_MatDescSetAttribute MatDescSetAttribute = nullptr;
  PFN_MatmulDescriptorInit MatmulDescriptorInit = nullptr;
  PFN_MatmulDescSetAttribute MatmulDescSetAttribute = nullptr;
  PFN_MatmulAlgSelectionInit MatmulAlgSelectionInit = nullptr;
  PFN_MatmulAlgSelectionDestroy MatmulAlgSelectionDestroy = nullptr;  // optional (>= 0.8.0; must be called there)
  PFN_MatmulAlgSetAttribute MatmulAlgSetAttribute = nullptr;
  PFN_MatmulAlgGetAttribute MatmulAlgGetAttribute = nullptr;
  PFN_MatmulGetWorkspace MatmulGetWorkspace = nullptr;
  PFN_MatmulPlanInit MatmulPlanInit = nullptr;
  PFN_MatmulPlanDestroy MatmulPlanDestroy = nullptr;
  PFN_Matmul Matmul = nullptr;
  PFN_MatmulSearch MatmulSearch = nullptr;
  PFN_SpMMAPruneCheck SpMMAPruneCheck = nullptr;
  PFN_SpMMACompressedSize SpMMACompressedSize = nullptr;
  PFN_SpMMACompress SpMMACompress = nullptr;
  // Descriptor-only forms (no plan needed; what PyTorch uses). Marked deprecated in the newest documentation, so
  // optional: without them we compress through a plan built for the weight alone.
  PFN_SpMMAPruneCheck2 SpMMAPruneCheck2 = nullptr;
  PFN_SpMMACompressedSize2 SpMMACompressedSize2 = nullptr;
  PFN_SpMMACompress2 SpMMACompress2 = nullptr;
};

// NVIDIA wheel directories (<site-packages>/nvidia/<dir>/lib) that hold libcusparseLt.so.0.
inline const std::vector<std::string> kWheelDirs = {"cusparselt", "cu13", "cu12"};
constexpr int kMinVersion = 600;  // 0.6.0: Hopper support, the compute-type numbering declared above
constexpr int kNewestVerified = 899;  // 0.8.x: the newest headers these declarations were checked against

// Loads the library once (no GPU needed) and reads its version. Fills `path`, `version`, `code`, or `error`.
struct LoadResult {
  bool ok = false;
  std::string path, version, error;
  std::string note;  // loaded, but a version these declarations were not checked against
  int code = 0;      // major*10000 + minor*100 + patch
};
const LoadResult& load();
// The entry points; requires load().ok (throws E_DEVICE otherwise).
const Api& api();
// The per-device library handle, initialised on first use at a fixed heap address (never moved or destroyed).
const Handle* handle();

// Status name / text for messages ("CUSPARSE_STATUS_NOT_SUPPORTED (operation not supported)").
std::string status_text(Status s);
// Throws E_CUSPARSELT naming the call when s != success (E_OOM for ALLOC_FAILED / INSUFFICIENT_RESOURCES).
void check(Status s, const char* call);
#define NMS_SLT(call) ::nms::cuda::slt::check((call), #call)

// Heap storage for one opaque object: constructed in place, never copied or moved.
template <class T>
struct Boxed {
  T* p;
  Boxed() : p(new T()) {}
  ~Boxed() { delete p; }
  Boxed(const Boxed&) = delete;
  Boxed& operator=(const Boxed&) = delete;
  T* get() const { return p; }
};

}  // namespace nms::cuda::slt
