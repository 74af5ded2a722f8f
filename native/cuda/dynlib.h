// Finding and opening the NVIDIA libraries we never link (cuSPARSELt, cuBLASLt). Where users install them, in order:
//   1. $NMSPARSE_CUDA_LIBS (a directory: an explicit choice wins over everything)
//   2. NVIDIA Python wheels, <site-packages>/nvidia/<sub>/lib for each wheel sub-directory given, in the
//      site-packages of: $VIRTUAL_ENV, $CONDA_PREFIX, /opt/*/.venv and /opt/*/venv, the python3 on PATH
//   3. NVIDIA's apt packages: /usr/lib/x86_64-linux-gnu
//   4. the plain soname (LD_LIBRARY_PATH, ld.so.conf, already loaded in the process)
//   5. other wheels: site-packages of $PYTHONPATH, ~/.local, ~/.pyenv, /usr/local, /usr, /opt/*, /opt/*/envs/*
//   6. the CUDA toolkit: $CUDA_HOME/lib64, $CUDA_PATH/lib64, /usr/local/cuda/lib64, /usr/local/cuda/targets/*/lib
// Opened with RTLD_NOW | RTLD_LOCAL and never closed (these libraries cannot be safely unloaded).
#pragma once
#include <string>
#include <vector>

namespace nms::cuda {

struct DynLib {
  void* handle = nullptr;
  std::string path;                // the path that opened
  std::vector<std::string> tried;  // "path: dlerror" for each failed attempt (for the reason text)
  std::string summary() const;     // a short "not found in …" text
};

// The search entry that stands for the loader's own path (step 4) in search_locations().
constexpr const char* kLoaderPath = "(loader path)";
// Every location open_library() tries, in order: existing directories (de-duplicated) and kLoaderPath.
std::vector<std::string> search_locations(const std::vector<std::string>& wheel_subdirs);
// Tries every soname in every location, in order; the first that opens wins.
DynLib open_library(const std::vector<std::string>& sonames, const std::vector<std::string>& wheel_subdirs);
// dlsym, or nullptr.
void* find_symbol(void* handle, const char* name);
// Real path of the file a symbol came from (dladdr), or `fallback`.
std::string library_path_of(void* symbol, const std::string& fallback);

// Looks `name` up in `handle` and stores it, cast to the function-pointer type F, in `slot`; on a miss
// appends `name` to the comma-separated `missing` list. True when found.
template <class F>
bool bind_symbol(void* handle, F& slot, const char* name, std::string& missing) {
  slot = reinterpret_cast<F>(find_symbol(handle, name));
  if (!slot) missing += (missing.empty() ? "" : ", ") + std::string(name);
  return slot != nullptr;
}

}  // namespace nms::cuda
