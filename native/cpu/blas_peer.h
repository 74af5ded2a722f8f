// OpenBLAS's cblas_sgemm, loaded at run time (dlopen), as the peer our CPU GEMM is benchmarked against. Never
// linked and never used by the library's own ops: it exists only for `npm run bench -- cpu`.
#pragma once
#include <cstdint>
#include <string>

namespace nms::cpu::blas_peer {

struct Info {
  bool available = false;
  std::string path;      // the library file that was loaded
  std::string error;     // why it is not available
  std::string config;    // openblas_get_config(), when exported
  std::string corename;  // openblas_get_corename(): the kernel family OpenBLAS picked for this CPU
  int threads = 0;       // openblas_get_num_threads()
};

// Looks for NMSPARSE_OPENBLAS (a file), then libopenblas.so.0 and libopenblas.so on the loader's path. The first
// call loads; later calls return the same answer.
const Info& info();

// C = op(A)·op(B), row-major float32 (A [m,k] or [k,m] when trans_a; B [k,n] or [n,k] when trans_b), with OpenBLAS
// set to the size of our thread pool. Fails E_UNSUPPORTED when the library is not available.
void sgemm(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b);

}  // namespace nms::cpu::blas_peer
