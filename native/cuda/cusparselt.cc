#include "cuda/cusparselt.h"

#include <cstdlib>
#include <mutex>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/dynlib.h"

namespace nms::cuda::slt {
namespace {

Api g_api;
LoadResult g_load;
std::once_flag g_load_once;

void do_load() {
  DynLib lib = open_library({"libcusparseLt.so.0", "libcusparseLt.so"}, kWheelDirs);
  if (!lib.handle) {
    g_load.error = "cuSPARSELt (libcusparseLt.so.0) " + lib.summary() +
                   ". Install the nvidia-cusparselt-cu13 (or -cu12) wheel, or set NMSPARSE_CUDA_LIBS to its lib directory";
    return;
  }
  void* h = lib.handle;
  std::string missing;
  bind_symbol(h, g_api.Init, "cusparseLtInit", missing);
  bind_symbol(h, g_api.Destroy, "cusparseLtDestroy", missing);
  bind_symbol(h, g_api.GetVersion, "cusparseLtGetVersion", missing);
  bind_symbol(h, g_api.GetProperty, "cusparseLtGetProperty", missing);
  bind_symbol(h, g_api.DenseDescriptorInit, "cusparseLtDenseDescriptorInit", missing);
  bind_symbol(h, g_api.StructuredDescriptorInit, "cusparseLtStructuredDescriptorInit", missing);
  bind_symbol(h, g_api.MatDescriptorDestroy, "cusparseLtMatDescriptorDestroy", missing);
  bind_symbol(h, g_api.MatDescSetAttribute, "cusparseLtMatDescSetAttribute", missing);
  bind_symbol(h, g_api.MatmulDescriptorInit, "cusparseLtMatmulDescriptorInit", missing);
  bind_symbol(h, g_api.MatmulDescSetAttribute, "cusparseLtMatmulDescSetAttribute", missing);
  bind_symbol(h, g_api.MatmulAlgSelectionInit, "cusparseLtMatmulAlgSelectionInit", missing);
  bind_symbol(h, g_api.MatmulAlgSetAttribute, "cusparseLtMatmulAlgSetAttribute", missing);
  bind_symbol(h, g_api.MatmulAlgGetAttribute, "cusparseLtMatmulAlgGetAttribute", missing);
  bind_symbol(h, g_api.MatmulGetWorkspace, "cusparseLtMatmulGetWorkspace", missing);
  bind_symbol(h, g_api.MatmulPlanInit, "cusparseLtMatmulPlanInit", missing);
  bind_symbol(h, g_api.MatmulPlanDestroy, "cusparseLtMatmulPlanDestroy", missing);
  bind_symbol(h, g_api.Matmul, "cusparseLtMatmul", missing);
  bind_symbol(h, g_api.MatmulSearch, "cusparseLtMatmulSearch", missing);
  bind_symbol(h, g_api.SpMMAPruneCheck, "cusparseLtSpMMAPruneCheck", missing);
  bind_symbol(h, g_api.SpMMACompressedSize, "cusparseLtSpMMACompressedSize", missing);
  bind_symbol(h, g_api.SpMMACompress, "cusparseLtSpMMACompress", missing);
  std::string optional_missing;  // >= 0.8.0 only, or deprecated
  bind_symbol(h, g_api.SpMMAPruneCheck2, "cusparseLtSpMMAPruneCheck2", optional_missing);
  bind_symbol(h, g_api.SpMMACompressedSize2, "cusparseLtSpMMACompressedSize2", optional_missing);
  bind_symbol(h, g_api.SpMMACompress2, "cusparseLtSpMMACompress2", optional_missing);
  bind_symbol(h, g_api.GetErrorString, "cusparseLtGetErrorString", optional_missing);
  bind_symbol(h, g_api.MatmulAlgSelectionDestroy, "cusparseLtMatmulAlgSelectionDestroy", optional_missing);

  g_load.path = library_path_of(reinterpret_cast<void*>(g_api.Init), lib.path);
  if (!g_api.GetProperty) {
    g_load.error = "cuSPARSELt at " + g_load.path + " has no cusparseLtGetProperty (older than 0.4); nmsparse needs >= 0.6";
    return;
  }
  int major = -1, minor = -1, patch = -1;
  if (g_api.GetProperty(MAJOR_VERSION, &major) != STATUS_SUCCESS ||
      g_api.GetProperty(MINOR_VERSION, &minor) != STATUS_SUCCESS ||
      g_api.GetProperty(PATCH_LEVEL, &patch) != STATUS_SUCCESS) {
    g_load.error = "cuSPARSELt at " + g_load.path + ": cusparseLtGetProperty failed";
    return;
  }
  g_load.version = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  g_load.code = major * 10000 + minor * 100 + patch;
  if (major == 0 && minor * 100 + patch < kMinVersion) {
    g_load.error = "cuSPARSELt " + g_load.version + " at " + g_load.path +
                   " is too old: nmsparse needs >= 0.6.0 (Hopper support and the 0.6 API it declares)";
    return;
  }
  if (major > 0 && !std::getenv("NMSPARSE_ALLOW_CUSPARSELT_MAJOR")) {
    g_load.error = "cuSPARSELt " + g_load.version + " at " + g_load.path +
                   " is a new major version whose API this build has not been checked against (0.6 - 0.8); "
                   "set NMSPARSE_ALLOW_CUSPARSELT_MAJOR=1 to try it anyway";
    return;
  }
  if (!missing.empty()) {
    g_load.error = "cuSPARSELt " + g_load.version + " at " + g_load.path + " lacks: " + missing;
    return;
  }
  if (g_load.code >= 800 && !g_api.MatmulAlgSelectionDestroy) {
    g_load.error = "cuSPARSELt " + g_load.version + " lacks cusparseLtMatmulAlgSelectionDestroy (required from 0.8.0)";
    return;
  }
  // Newer 0.x releases keep the entry points we call (the *2 helpers are only deprecated), so they are used, but
  // said to be unverified: a changed struct size or enum would show as wrong results, not as a load failure.
  if (g_load.code > kNewestVerified)
    g_load.note = "cuSPARSELt " + g_load.version + " is newer than the versions nmsparse was checked against "
                  "(0.6 - 0.8); the GPU tests (npm run test:gpu) say whether it works";
  g_load.ok = true;
}

}  // namespace

const LoadResult& load() {
  std::call_once(g_load_once, do_load);
  return g_load;
}

const Api& api() {
  const LoadResult& l = load();
  if (!l.ok) fail("E_DEVICE", l.error);
  return g_api;
}

const Handle* handle() {
  static std::mutex mu;
  static Handle* h = nullptr;
  static std::string init_error;
  std::lock_guard<std::mutex> lock(mu);
  if (h) return h;
  if (!init_error.empty()) fail("E_CUSPARSELT", init_error);
  activate();
  const Api& a = api();
  auto* fresh = new Handle();  // fixed address for the life of the process; never destroyed (like PyTorch)
  const Status s = a.Init(fresh);
  if (s != STATUS_SUCCESS) {
    delete fresh;
    init_error = "cusparseLtInit failed: " + status_text(s) +
                 (s == STATUS_ARCH_MISMATCH ? " (this cuSPARSELt does not support the GPU's architecture)" : "");
    fail("E_CUSPARSELT", init_error);
  }
  h = fresh;
  return h;
}

std::string status_text(Status s) {
  static const char* names[] = {"SUCCESS", "NOT_INITIALIZED", "ALLOC_FAILED", "INVALID_VALUE", "ARCH_MISMATCH",
                                "MAPPING_ERROR", "EXECUTION_FAILED", "INTERNAL_ERROR", "MATRIX_TYPE_NOT_SUPPORTED",
                                "ZERO_PIVOT", "NOT_SUPPORTED", "INSUFFICIENT_RESOURCES"};
  std::string t = "CUSPARSE_STATUS_";
  t += (s >= 0 && s <= 11) ? names[s] : std::to_string(static_cast<int>(s)).c_str();
  if (g_api.GetErrorString) {
    const char* msg = g_api.GetErrorString(s);
    if (msg && *msg) t += std::string(" (") + msg + ")";
  }
  return t;
}

void check(Status s, const char* call) {
  if (s == STATUS_SUCCESS) return;
  const std::string msg = std::string(call) + ": " + status_text(s);
  if (s == STATUS_ALLOC_FAILED || s == STATUS_INSUFFICIENT_RESOURCES) fail("E_OOM", msg);
  fail("E_CUSPARSELT", msg + (s == STATUS_NOT_SUPPORTED || s == STATUS_INVALID_VALUE
                                  ? " [set CUSPARSELT_LOG_LEVEL=5 to see cuSPARSELt's reason]"
                                  : ""));
}

}  // namespace nms::cuda::slt
