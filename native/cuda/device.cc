#include "cuda/device.h"

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>

#include "cuda/cublaslt.h"
#include "cuda/cusparselt.h"

namespace nms::cuda {
namespace {

std::atomic<int64_t> g_live_bytes{0}, g_live_buffers{0};

std::string err_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

std::string version_text(int v) {  // 13000 -> "13.0"
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// The kernel module's release ("580.95.05") from /proc/driver/nvidia/version, or "" (cudart gives only the CUDA
// version a driver supports, and that only where libcuda.so.1 loads).
std::string driver_release() {
  std::ifstream f("/proc/driver/nvidia/version");
  std::string line;
  if (!std::getline(f, line)) return {};
  const size_t at = line.find("Kernel Module");
  if (at == std::string::npos) return {};
  std::istringstream rest(line.substr(at + 13));
  std::string v;
  rest >> v;
  return v;
}

// The oldest driver branch that runs a CUDA runtime of this major version (NVIDIA's minor-version compatibility:
// any 13.x runtime on R580+, any 12.x on R525+, 11.x on R450+).
int min_driver_for(int runtime_version) {
  const int major = runtime_version / 1000;
  return major >= 13 ? 580 : major == 12 ? 525 : 450;
}

Status probe() {
  Status s;
  cudaRuntimeGetVersion(&s.runtime_version);
  cudaDriverGetVersion(&s.driver_version);
  // The libraries are looked for first: they need no GPU, and backendInfo() reports them either way.
  const slt::LoadResult& sl = slt::load();
  s.cusparselt.loaded = sl.ok;
  s.cusparselt.path = sl.path;
  s.cusparselt.version = sl.version;
  s.cusparselt.version_code = sl.code;
  s.cusparselt.error = sl.error;
  s.cusparselt.note = sl.note;
  const blt::LoadResult& bl = blt::load();
  s.cublaslt.loaded = bl.ok;
  s.cublaslt.path = bl.path;
  s.cublaslt.version = bl.version;
  s.cublaslt.version_code = bl.code;
  s.cublaslt.error = bl.error;

  const cudaError_t e = cudaGetDeviceCount(&s.device_count);
  cudaGetLastError();  // the probe's failures must not linger as this thread's last error
  if (e != cudaSuccess) {
    s.device_count = 0;
    if (e == cudaErrorInsufficientDriver && s.driver_version <= 0) {
      s.reason = "no NVIDIA driver: cudaGetDeviceCount returned cudaErrorInsufficientDriver (35) and no driver is "
                 "installed (libcuda.so.1 not found)";
    } else if (e == cudaErrorInsufficientDriver) {
      const std::string release = driver_release();
      s.reason = "the NVIDIA driver " + (release.empty() ? std::string() : release + " ") + "supports CUDA " +
                 version_text(s.driver_version) + ", older than the CUDA " + version_text(s.runtime_version) +
                 " runtime this nmsparse build links statically, which needs driver >= " +
                 std::to_string(min_driver_for(s.runtime_version)) +
                 " (cudaErrorInsufficientDriver). Update the driver, or build nmsparse from source with the CUDA "
                 "toolkit the driver supports (its nvcc on PATH, then npx cmake-js compile; not yet tested below "
                 "CUDA 13); the cpu device works meanwhile";
    } else if (e == cudaErrorNoDevice) {
      s.reason = "no CUDA device: cudaGetDeviceCount returned cudaErrorNoDevice (100)";
    } else {
      s.reason = "cudaGetDeviceCount failed: " + err_text(e);
    }
    return s;
  }
  if (s.device_count == 0) {
    s.reason = "no CUDA device (cudaGetDeviceCount returned 0)";
    return s;
  }
  int dev = 0;
  if (const char* v = std::getenv("NMSPARSE_CUDA_DEVICE")) dev = std::atoi(v);
  if (dev < 0 || dev >= s.device_count) {
    s.reason = "NMSPARSE_CUDA_DEVICE=" + std::to_string(dev) + " but only " + std::to_string(s.device_count) +
               " CUDA device(s) are visible";
    return s;
  }
  s.device = dev;
  cudaDeviceProp p{};
  const cudaError_t pe = cudaGetDeviceProperties(&p, dev);
  if (pe != cudaSuccess) {
    cudaGetLastError();
    s.reason = "cudaGetDeviceProperties(" + std::to_string(dev) + ") failed: " + err_text(pe);
    return s;
  }
  s.name = p.name;
  s.sm_major = p.major;
  s.sm_minor = p.minor;
  s.sm_count = p.multiProcessorCount;
  s.memory_bytes = p.totalGlobalMem;
  int pools = 0;
  cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev);
  cudaGetLastError();
  s.memory_pools = pools != 0;
  if (p.major < 8) {
    s.reason = "GPU " + std::to_string(dev) + " (" + s.name + ") is sm_" + std::to_string(p.major) +
               std::to_string(p.minor) + "; nmsparse needs sm_80 or newer (Ampere, Ada, Hopper) for sparse tensor cores";
    return s;
  }
  // Dense products (cuBLASLt) and our own kernels need no cuSPARSELt: without it sparse products run dense.
  if (!sl.ok && !bl.ok) {
    s.reason = "neither GPU GEMM library loads: " + sl.error + "; " + bl.error;
    return s;
  }
  if (!sl.ok) s.sparse_reason = sl.error;
  s.usable = true;
  return s;
}

}  // namespace

void throw_cuda(cudaError_t e, const char* call) {
  cudaGetLastError();  // clear the non-sticky error so later calls on this thread start clean
  const std::string msg = std::string(call) + ": " + err_text(e);
  if (e == cudaErrorMemoryAllocation) fail("E_OOM", "out of GPU memory: " + msg);
  fail("E_CUDA", msg);
}

void check_launch(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw_cuda(e, kernel);
}

const Status& status() {
  static const Status s = probe();  // thread-safe one-time initialisation
  return s;
}

void require_usable() {
  const Status& s = status();
  if (!s.usable) fail("E_DEVICE", "'cuda' is not available: " + s.reason);
}

void activate() {
  thread_local int active = -1;
  const Status& s = status();
  if (s.usable && active == s.device) return;
  require_usable();
  NMS_CUDA(cudaSetDevice(s.device));
  active = s.device;
}

cudaStream_t stream() {
  static std::once_flag once;
  static cudaStream_t st = nullptr;
  static cudaError_t err = cudaSuccess;
  std::call_once(once, [] {
    activate();
    err = cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    // The pool's default release threshold (0) hands freed memory back to the OS at every synchronisation, so each
    // sync-then-allocate maps it again. Keep it; alloc()'s retry and mem_stats(trim) still trim explicitly.
    if (status().memory_pools) {
      cudaMemPool_t pool;
      uint64_t keep = UINT64_MAX;
      if (cudaDeviceGetDefaultMemPool(&pool, status().device) != cudaSuccess ||
          cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess)
        cudaGetLastError();  // an optimisation only
    }
  });
  if (err != cudaSuccess) throw_cuda(err, "cudaStreamCreateWithFlags");
  return st;
}

void sync() {
  activate();
  NMS_CUDA(cudaStreamSynchronize(stream()));
}

// ---- memory ----------------------------------------------------------------------------------------------------

Allocation::~Allocation() {
  if (!ptr_) return;
  // Errors are ignored here: a destructor must not throw, and at process exit the runtime may be gone already.
  try {
    activate();
    if (status().memory_pools) {
      if (cudaFreeAsync(ptr_, stream()) != cudaSuccess) cudaGetLastError();
    } else {
      cudaStreamSynchronize(stream());
      if (cudaFree(ptr_) != cudaSuccess) cudaGetLastError();
    }
  } catch (...) {
  }
  g_live_bytes -= static_cast<int64_t>(bytes_);
  g_live_buffers -= 1;
}

DevPtr alloc(size_t bytes) {
  activate();
  if (bytes == 0) return std::make_shared<Allocation>(nullptr, 0);
  const size_t rounded = (bytes + 15) & ~size_t(15);
  const bool pools = status().memory_pools;
  void* p = nullptr;
  cudaError_t e = pools ? cudaMallocAsync(&p, rounded, stream()) : cudaMalloc(&p, rounded);
  if (e == cudaErrorMemoryAllocation) {
    // Memory freed on the stream but not yet returned, or cached by the pool: release it and try once more.
    cudaGetLastError();
    cudaStreamSynchronize(stream());
    if (pools) {
      cudaMemPool_t pool;
      if (cudaDeviceGetDefaultMemPool(&pool, status().device) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
    }
    e = pools ? cudaMallocAsync(&p, rounded, stream()) : cudaMalloc(&p, rounded);
  }
  if (e != cudaSuccess) {
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      fail("E_OOM", "out of GPU memory: could not allocate " + std::to_string(bytes) + " bytes on " + status().name);
    }
    throw_cuda(e, pools ? "cudaMallocAsync" : "cudaMalloc");
  }
  g_live_bytes += static_cast<int64_t>(rounded);
  g_live_buffers += 1;
  try {
    return std::make_shared<Allocation>(p, rounded);
  } catch (...) {
    pools ? cudaFreeAsync(p, stream()) : cudaFree(p);
    g_live_bytes -= static_cast<int64_t>(rounded);
    g_live_buffers -= 1;
    throw;
  }
}

DevPtr alloc_zeroed(size_t bytes) {
  DevPtr d = alloc(bytes);
  if (bytes) NMS_CUDA(cudaMemsetAsync(d->ptr(), 0, d->bytes(), stream()));
  return d;
}

MemStats mem_stats(bool trim) {
  activate();
  MemStats m;
  if (trim) sync();
  if (status().memory_pools) {
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, status().device) == cudaSuccess) {
      if (trim) cudaMemPoolTrimTo(pool, 0);
      uint64_t v = 0;
      if (cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &v) == cudaSuccess) m.pool_reserved = v;
      if (cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &v) == cudaSuccess) m.pool_used = v;
    }
    cudaGetLastError();
  }
  NMS_CUDA(cudaMemGetInfo(&m.free_bytes, &m.total_bytes));
  m.live_bytes = g_live_bytes.load();
  m.live_buffers = g_live_buffers.load();
  return m;
}

void upload(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  activate();
  // From pageable memory this returns once `src` has been staged, so the caller may reuse it at once.
  NMS_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
}

void download(void* dst, const void* src, size_t bytes) {
  activate();
  if (bytes) NMS_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  NMS_CUDA(cudaStreamSynchronize(stream()));
}

void copy_d2d(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  activate();
  NMS_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

Workspace workspace(size_t bytes) {
  static std::mutex mu;
  static DevPtr& ws = *new DevPtr();  // never destroyed (no cudaFree during static destruction at exit)
  std::unique_lock<std::mutex> lock(mu);
  if (bytes > 0 && (!ws || ws->bytes() < bytes)) {
    ws.reset();  // stream-ordered free: work already enqueued keeps using the old buffer safely
    ws = alloc(bytes + bytes / 4);
  }
  void* p = ws ? ws->ptr() : nullptr;
  return Workspace(std::move(lock), p);
}

}  // namespace nms::cuda
