// cuBLASLt, loaded at run time (dlopen libcublasLt.so.13, then .so.12), from our own declarations of the entry
// points we call. Used for dense matmul/linear on 'cuda' and as the dense side of nm.linear's dispatch.
// The handle and descriptors are pointers to library-owned objects (unlike cuSPARSELt). When the build finds a
// real cublasLt.h (NMSPARSE_CHECK_CUBLASLT_H), cublaslt_check.cc asserts that these declarations match it.
#pragma once
#include <driver_types.h>
#include <library_types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nms::cuda::blt {

struct Context;  // cublasLtContext
using Handle = Context*;
struct MatmulDescOpaque { uint64_t data[32]; };
using MatmulDesc = MatmulDescOpaque*;
struct MatrixLayoutOpaque { uint64_t data[8]; };
using MatrixLayout = MatrixLayoutOpaque*;
struct MatmulPreferenceOpaque { uint64_t data[8]; };
using MatmulPreference = MatmulPreferenceOpaque*;
struct MatmulAlgo { uint64_t data[8]; };

enum Status : int {
  STATUS_SUCCESS = 0, STATUS_NOT_INITIALIZED = 1, STATUS_ALLOC_FAILED = 3, STATUS_INVALID_VALUE = 7,
  STATUS_ARCH_MISMATCH = 8, STATUS_MAPPING_ERROR = 11, STATUS_EXECUTION_FAILED = 13, STATUS_INTERNAL_ERROR = 14,
  STATUS_NOT_SUPPORTED = 15, STATUS_LICENSE_ERROR = 16,
};
enum ComputeType : int {
  COMPUTE_32F = 68, COMPUTE_32F_FAST_TF32 = 77, COMPUTE_32I = 72,
};
enum Operation : int { OP_N = 0, OP_T = 1 };
enum MatmulDescAttribute : int {
  MATMUL_DESC_COMPUTE_TYPE = 0, MATMUL_DESC_SCALE_TYPE = 1, MATMUL_DESC_POINTER_MODE = 2, MATMUL_DESC_TRANSA = 3,
  MATMUL_DESC_TRANSB = 4, MATMUL_DESC_EPILOGUE = 7, MATMUL_DESC_BIAS_POINTER = 8, MATMUL_DESC_BIAS_DATA_TYPE = 26,
};
enum MatrixLayoutAttribute : int { MATRIX_LAYOUT_TYPE = 0, MATRIX_LAYOUT_ORDER = 1 };
enum MatmulPreferenceAttribute : int { MATMUL_PREF_SEARCH_MODE = 0, MATMUL_PREF_MAX_WORKSPACE_BYTES = 1 };
enum Epilogue : int { EPILOGUE_DEFAULT = 1, EPILOGUE_RELU = 2, EPILOGUE_BIAS = 4, EPILOGUE_RELU_BIAS = 6 };

struct HeuristicResult {
  MatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};

using PFN_Create = Status (*)(Handle*);
using PFN_GetVersion = size_t (*)();
using PFN_GetStatusString = const char* (*)(Status);
using PFN_MatmulDescCreate = Status (*)(MatmulDesc*, ComputeType, cudaDataType);
using PFN_MatmulDescDestroy = Status (*)(MatmulDesc);
using PFN_MatmulDescSetAttribute = Status (*)(MatmulDesc, MatmulDescAttribute, const void*, size_t);
using PFN_MatrixLayoutCreate = Status (*)(MatrixLayout*, cudaDataType, uint64_t, uint64_t, int64_t);
using PFN_MatrixLayoutDestroy = Status (*)(MatrixLayout);
using PFN_MatmulPreferenceCreate = Status (*)(MatmulPreference*);
using PFN_MatmulPreferenceDestroy = Status (*)(MatmulPreference);
using PFN_MatmulPreferenceSetAttribute = Status (*)(MatmulPreference, MatmulPreferenceAttribute, const void*, size_t);
using PFN_MatmulAlgoGetHeuristic = Status (*)(Handle, MatmulDesc, MatrixLayout, MatrixLayout, MatrixLayout,
                                              MatrixLayout, MatmulPreference, int, HeuristicResult*, int*);
using PFN_Matmul = Status (*)(Handle, MatmulDesc, const void*, const void*, MatrixLayout, const void*, MatrixLayout,
                              const void*, const void*, MatrixLayout, void*, MatrixLayout, const MatmulAlgo*, void*,
                              size_t, cudaStream_t);

struct Api {
  PFN_Create Create = nullptr;
  PFN_GetVersion GetVersion = nullptr;
  PFN_GetStatusString GetStatusString = nullptr;
  PFN_MatmulDescCreate MatmulDescCreate = nullptr;
  PFN_MatmulDescDestroy MatmulDescDestroy = nullptr;
  PFN_MatmulDescSetAttribute MatmulDescSetAttribute = nullptr;
  PFN_MatrixLayoutCreate MatrixLayoutCreate = nullptr;
  PFN_MatrixLayoutDestroy MatrixLayoutDestroy = nullptr;
  PFN_MatmulPreferenceCreate MatmulPreferenceCreate = nullptr;
  PFN_MatmulPreferenceDestroy MatmulPreferenceDestroy = nullptr;
  PFN_MatmulPreferenceSetAttribute MatmulPreferenceSetAttribute = nullptr;
  PFN_MatmulAlgoGetHeuristic MatmulAlgoGetHeuristic = nullptr;
  PFN_Matmul Matmul = nullptr;
};

// NVIDIA wheel directories that hold libcublasLt: cu13 wheels put it in nvidia/cu13/lib, cu12 in nvidia/cublas/lib.
inline const std::vector<std::string> kWheelDirs = {"cu13", "cublas", "cu12"};
struct LoadResult {
  bool ok = false;
  std::string path, version, error;
  int code = 0;  // major*10000 + minor*100 + patch, as cublasLtGetVersion returns it
};
// Loads once; no GPU needed.
const LoadResult& load();
// Entry points; throws E_UNSUPPORTED naming why cuBLASLt is unavailable.
const Api& api();
// The library handle (created on first use, kept for the life of the process).
Handle handle();

std::string status_text(Status s);
// Throws E_CUBLAS naming the call (E_OOM for ALLOC_FAILED).
void check(Status s, const char* call);
#define NMS_BLT(call) ::nms::cuda::blt::check((call), #call)

}  // namespace nms::cuda::blt
