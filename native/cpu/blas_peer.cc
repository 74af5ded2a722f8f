#include "cpu/blas_peer.h"

#include <dlfcn.h>

#include <climits>
#include <cstdlib>

#include "core/error.h"
#include "core/threadpool.h"

namespace nms::cpu::blas_peer {
namespace {

// The few cblas / OpenBLAS entry points we call, declared here (the library is never linked).
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
using SgemmFn = void (*)(int order, int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc);
using GetStrFn = char* (*)();
using GetIntFn = int (*)();
using SetIntFn = void (*)(int);

struct Lib {
  Info info;
  SgemmFn sgemm = nullptr;
  SetIntFn set_threads = nullptr;
};

Lib load() {
  Lib lib;
  std::string tried;
  const char* env = std::getenv("NMSPARSE_OPENBLAS");
  const char* names[] = {env, "libopenblas.so.0", "libopenblas.so"};
  for (const char* name : names) {
    if (!name || !*name) continue;
    void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (e ? e : name);
      continue;
    }
    auto fn = reinterpret_cast<SgemmFn>(dlsym(h, "cblas_sgemm"));
    if (!fn) {
      tried += std::string(tried.empty() ? "" : "; ") + name + ": no cblas_sgemm";
      dlclose(h);
      continue;
    }
    lib.sgemm = fn;
    lib.info.available = true;
    Dl_info di;
    lib.info.path = dladdr(reinterpret_cast<void*>(fn), &di) && di.dli_fname ? di.dli_fname : name;
    if (auto f = reinterpret_cast<GetStrFn>(dlsym(h, "openblas_get_config"))) lib.info.config = f();
    if (auto f = reinterpret_cast<GetStrFn>(dlsym(h, "openblas_get_corename"))) lib.info.corename = f();
    if (auto f = reinterpret_cast<GetIntFn>(dlsym(h, "openblas_get_num_threads"))) lib.info.threads = f();
    lib.set_threads = reinterpret_cast<SetIntFn>(dlsym(h, "openblas_set_num_threads"));
    return lib;  // the handle stays open for the life of the process
  }
  lib.info.error = "libopenblas not found (" + tried + "); on Debian/Ubuntu: apt-get install libopenblas0";
  return lib;
}

const Lib& lib() {
  static const Lib l = load();
  return l;
}

}  // namespace

const Info& info() { return lib().info; }

void sgemm(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b) {
  const Lib& l = lib();
  if (!l.info.available) fail("E_UNSUPPORTED", "blasSgemm: " + l.info.error);
  if (m < 1 || n < 1 || k < 1 || m > INT_MAX || n > INT_MAX || k > INT_MAX)
    fail("E_SHAPE", "blasSgemm: expected 1 <= m, n, k <= 2^31-1, got m=" + std::to_string(m) + " n=" +
                        std::to_string(n) + " k=" + std::to_string(k));
  if (l.set_threads) l.set_threads(num_threads());
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(k);
  l.sgemm(kRowMajor, trans_a ? kTrans : kNoTrans, trans_b ? kTrans : kNoTrans, M, N, K, 1.f, a, trans_a ? M : K, b,
          trans_b ? K : N, 0.f, c, N);
}

}  // namespace nms::cpu::blas_peer
