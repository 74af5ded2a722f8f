#include "cuda/cublaslt.h"

#include <mutex>

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/dynlib.h"

namespace nms::cuda::blt {
namespace {

Api g_api;
LoadResult g_load;
std::once_flag g_load_once;

void do_load() {
  DynLib lib = open_library({"libcublasLt.so.13", "libcublasLt.so.12"}, kWheelDirs);
  if (!lib.handle) {
    g_load.error = "cuBLASLt (libcublasLt.so.13 / .12) " + lib.summary() +
                   ". Install the nvidia-cublas wheel, or set NMSPARSE_CUDA_LIBS to its lib directory";
    return;
  }
  void* h = lib.handle;
  std::string missing;
  bind_symbol(h, g_api.Create, "cublasLtCreate", missing);
  bind_symbol(h, g_api.GetVersion, "cublasLtGetVersion", missing);
  bind_symbol(h, g_api.GetStatusString, "cublasLtGetStatusString", missing);
  bind_symbol(h, g_api.MatmulDescCreate, "cublasLtMatmulDescCreate", missing);
  bind_symbol(h, g_api.MatmulDescDestroy, "cublasLtMatmulDescDestroy", missing);
  bind_symbol(h, g_api.MatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute", missing);
  bind_symbol(h, g_api.MatrixLayoutCreate, "cublasLtMatrixLayoutCreate", missing);
  bind_symbol(h, g_api.MatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy", missing);
  bind_symbol(h, g_api.MatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate", missing);
  bind_symbol(h, g_api.MatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy", missing);
  bind_symbol(h, g_api.MatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute", missing);
  bind_symbol(h, g_api.MatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic", missing);
  bind_symbol(h, g_api.Matmul, "cublasLtMatmul", missing);
  g_load.path = library_path_of(reinterpret_cast<void*>(g_api.Create), lib.path);
  if (g_api.GetVersion) {
    const size_t v = g_api.GetVersion();  // major*10000 + minor*100 + patch
    g_load.code = static_cast<int>(v);
    g_load.version = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  }
  if (!missing.empty()) {
    g_load.error = "cuBLASLt at " + g_load.path + " lacks: " + missing;
    return;
  }
  if (g_load.code < 110000) {
    g_load.error = "cuBLASLt " + g_load.version + " at " + g_load.path + " is too old: nmsparse needs >= 11.0";
    return;
  }
  g_load.ok = true;
}

}  // namespace

const LoadResult& load() {
  std::call_once(g_load_once, do_load);
  return g_load;
}

const Api& api() {
  const LoadResult& l = load();
  if (!l.ok) fail("E_UNSUPPORTED", "dense GEMM on 'cuda' needs cuBLASLt: " + l.error);
  return g_api;
}

Handle handle() {
  static std::mutex mu;
  static Handle h = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (h) return h;
  activate();
  const Api& a = api();
  Handle fresh = nullptr;
  check(a.Create(&fresh), "cublasLtCreate");
  h = fresh;  // kept for the life of the process
  return h;
}

std::string status_text(Status s) {
  std::string t = "CUBLAS_STATUS " + std::to_string(static_cast<int>(s));
  if (g_api.GetStatusString) {
    const char* msg = g_api.GetStatusString(s);
    if (msg && *msg) t = msg;
  }
  return t;
}

void check(Status s, const char* call) {
  if (s == STATUS_SUCCESS) return;
  const std::string msg = std::string(call) + ": " + status_text(s);
  if (s == STATUS_ALLOC_FAILED) fail("E_OOM", msg);
  fail("E_CUBLAS", msg);
}

}  // namespace nms::cuda::blt
