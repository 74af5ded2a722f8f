// The CUDA side's runtime: error mapping, the one-time probe of driver / device / libraries (what
// backendInfo() reports), the process stream, and stream-ordered device memory.
//
// Rules every CUDA op follows:
//   * call activate() first (the CUDA device is per host thread, and async ops run on the addon's op thread);
//   * enqueue on stream() and return; only sync() (or a download) waits for the GPU;
//   * a failed CUDA call throws nms::Error: E_OOM for cudaErrorMemoryAllocation, else E_CUDA naming the call
//     and the CUDA error. Nothing aborts the process.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/error.h"

namespace nms::cuda {

[[noreturn]] void throw_cuda(cudaError_t e, const char* call);
inline void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) throw_cuda(e, call);
}
#define NMS_CUDA(call) ::nms::cuda::check((call), #call)

// After a kernel launch: launch-configuration errors surface here (execution errors surface at sync()).
void check_launch(const char* kernel);

// What was found when a library was looked for.
struct LibInfo {
  bool loaded = false;
  std::string path;     // the file dlopen accepted
  std::string version;  // "0.8.1" / "13.1.1"
  int version_code = 0; // major*10000 + minor*100 + patch
  std::string error;    // why it is not usable (empty when it is)
  std::string note;     // usable, but not a version nmsparse was checked against
};

struct Status {
  bool usable = false;
  std::string reason;  // why the GPU path is unusable (empty when usable)
  int runtime_version = 0, driver_version = 0, device_count = 0;
  int device = -1;  // the CUDA device used (NMSPARSE_CUDA_DEVICE, default 0)
  std::string name;
  int sm_major = 0, sm_minor = 0, sm_count = 0;
  size_t memory_bytes = 0;
  bool memory_pools = false;  // stream-ordered allocator available
  LibInfo cusparselt, cublaslt;
  // Usable without cuSPARSELt (cuBLASLt and our kernels): why sparse products run dense (empty when they need not).
  std::string sparse_reason;
};

// Probes once (thread-safe) and caches: driver, device, architecture, cuSPARSELt, cuBLASLt. Needs no GPU to run.
const Status& status();
// Throws E_DEVICE with status().reason when the GPU path is unusable.
void require_usable();
// Makes the nmsparse device current on this thread (cheap after the first call). Implies require_usable().
void activate();
// The process-wide stream (non-blocking, created on first use). Every kernel and library call goes on it.
cudaStream_t stream();
// Waits for everything enqueued so far; surfaces asynchronous kernel errors as E_CUDA.
void sync();

// ---- device memory -------------------------------------------------------------------------------------------
// One stream-ordered allocation. Freed (cudaFreeAsync on stream()) when the last shared owner lets go, so work
// already enqueued on the stream that reads it finishes first: a dispose() during an in-flight op is safe.
class Allocation {
 public:
  Allocation(void* p, size_t bytes) : ptr_(p), bytes_(bytes) {}
  ~Allocation();
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;
  void* ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  template <class T> T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_;
  size_t bytes_;
};
using DevPtr = std::shared_ptr<Allocation>;

// `bytes` of device memory (rounded up to 16 bytes; 0 bytes gives a null pointer). On a failed allocation it
// synchronizes, trims the pool and retries once before throwing E_OOM.
DevPtr alloc(size_t bytes);
// alloc() + cudaMemsetAsync(0).
DevPtr alloc_zeroed(size_t bytes);

struct MemStats {
  int64_t live_bytes = 0, live_buffers = 0;  // allocations made by nmsparse and not yet freed
  size_t free_bytes = 0, total_bytes = 0;    // cudaMemGetInfo
  uint64_t pool_reserved = 0, pool_used = 0; // the default memory pool, when used
};
// With `trim`: synchronizes and releases the pool's unused memory first (for leak checks).
MemStats mem_stats(bool trim);

// Host <-> device copies on stream(). upload() returns once `src` may be reused; download() returns when done.
void upload(void* dst, const void* src, size_t bytes);
void download(void* dst, const void* src, size_t bytes);
void copy_d2d(void* dst, const void* src, size_t bytes);

// Grows-only scratch used by cuSPARSELt / cuBLASLt workspaces (one stream, so one buffer is enough). Keep the
// returned object alive until the library call that uses ptr() has been enqueued: it holds the lock that stops
// another thread from growing (freeing) the buffer meanwhile. Take no second one while holding one.
class Workspace {
 public:
  Workspace(std::unique_lock<std::mutex> lock, void* ptr) : lock_(std::move(lock)), ptr_(ptr) {}
  void* ptr() const { return ptr_; }

 private:
  std::unique_lock<std::mutex> lock_;
  void* ptr_;
};
Workspace workspace(size_t bytes);

// The driver's maximum grid.y / grid.z (65535) and a helper for 1-D launches over `n` items.
inline unsigned grid_for(int64_t n, int block) {
  int64_t g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 0x7fffffff) g = 0x7fffffff;
  return static_cast<unsigned>(g);
}

}  // namespace nms::cuda
