#include "cuda/dynlib.h"

#include <dlfcn.h>
#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <set>

namespace nms::cuda {
namespace {

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> glob_dirs(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (glob(pattern.c_str(), GLOB_NOSORT | GLOB_ONLYDIR, nullptr, &g) == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  // Newest Python first (python3.12 before python3.10) so a fresh wheel wins over an old one.
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) { return a > b; });
  return out;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

void split_paths(const std::string& s, std::vector<std::string>& out) {
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(':', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace

std::string DynLib::summary() const {
  if (handle) return path;
  // "not found" for every plain miss, in one list; anything else (wrong architecture, a missing dependency) verbatim.
  std::vector<std::string> missing, other;
  for (const auto& t : tried) {
    const size_t colon = t.find(": ");
    const std::string where = t.substr(0, colon), why = colon == std::string::npos ? "" : t.substr(colon + 2);
    if (why.find("No such file") != std::string::npos || why.find("cannot open shared object") != std::string::npos)
      missing.push_back(where);
    else
      other.push_back(t);
  }
  std::string s = "not found in the loader path";
  std::vector<std::string> dirs;
  for (const auto& m : missing) {
    if (m.find('/') == std::string::npos) continue;  // a bare soname: the loader path, said above
    const std::string dir = m.substr(0, m.rfind('/'));
    if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) dirs.push_back(dir);
  }
  for (size_t i = 0; i < dirs.size() && i < 8; ++i) s += ", " + dirs[i];
  if (dirs.size() > 8) s += " and " + std::to_string(dirs.size() - 8) + " more directories";
  for (const auto& o : other) s += "; " + o;
  return s;
}

std::vector<std::string> python_site_dirs() {
  std::vector<std::string> cand;
  split_paths(env("PYTHONPATH"), cand);
  const std::string venv = env("VIRTUAL_ENV"), conda = env("CONDA_PREFIX"), home = env("HOME");
  const char* layouts[] = {"/lib/python3*/site-packages", "/lib/python3*/dist-packages", "/lib64/python3*/site-packages"};
  auto add_prefix = [&](const std::string& prefix) {
    if (prefix.empty()) return;
    for (const char* l : layouts)
      for (auto& d : glob_dirs(prefix + l)) cand.push_back(d);
  };
  add_prefix(venv);
  add_prefix(conda);
  if (!home.empty()) {
    add_prefix(home + "/.local");
    for (auto& v : glob_dirs(home + "/.pyenv/versions/*")) add_prefix(v);
  }
  add_prefix("/usr/local");
  add_prefix("/usr");
  cand.push_back("/usr/lib/python3/dist-packages");
  for (auto& d : glob_dirs("/opt/*")) {
    add_prefix(d);
    for (auto& e : glob_dirs(d + "/envs/*")) add_prefix(e);  // conda environments under /opt/<conda>/envs
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (auto& d : cand)
    if (seen.insert(d).second && is_dir(d)) out.push_back(d);
  return out;
}

DynLib open_library(const std::vector<std::string>& sonames, const std::vector<std::string>& wheel_subdirs) {
  DynLib lib;
  auto attempt = [&](const std::string& path) -> bool {
    dlerror();
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) {
      lib.handle = h;
      lib.path = path;
      return true;
    }
    const char* e = dlerror();
    std::string why = e ? e : "dlopen failed";
    // dlerror repeats the path; keep only what follows it.
    const size_t at = why.find(path + ": ");
    if (at == 0) why = why.substr(path.size() + 2);
    lib.tried.push_back(path + ": " + why);
    return false;
  };
  auto in_dir = [&](const std::string& dir) -> bool {
    if (!is_dir(dir)) return false;
    for (auto& so : sonames)
      if (attempt(dir + "/" + so)) return true;
    return false;
  };

  // 1. an explicit directory
  const std::string forced = env("NMSPARSE_CUDA_LIBS");
  if (!forced.empty()) {
    if (in_dir(forced)) return lib;
    if (!is_dir(forced)) lib.tried.push_back("NMSPARSE_CUDA_LIBS=" + forced + ": not a directory");
  }
  // 2. the loader's own search path
  for (auto& so : sonames)
    if (attempt(so)) return lib;
  // 3. NVIDIA wheels
  for (auto& site : python_site_dirs())
    for (auto& sub : wheel_subdirs)
      if (in_dir(site + "/nvidia/" + sub + "/lib")) return lib;
  // 4. the CUDA toolkit
  std::vector<std::string> toolkit;
  for (const char* v : {"CUDA_HOME", "CUDA_PATH"}) {
    const std::string h = env(v);
    if (!h.empty()) toolkit.push_back(h + "/lib64");
  }
  toolkit.push_back("/usr/local/cuda/lib64");
  for (auto& d : glob_dirs("/usr/local/cuda/targets/*/lib")) toolkit.push_back(d);
  for (auto& d : toolkit)
    if (in_dir(d)) return lib;
  return lib;
}

void* find_symbol(void* handle, const char* name) { return handle ? dlsym(handle, name) : nullptr; }

std::string library_path_of(void* symbol, const std::string& fallback) {
  Dl_info info{};
  if (symbol && dladdr(symbol, &info) && info.dli_fname && info.dli_fname[0]) {
    char* real = realpath(info.dli_fname, nullptr);
    if (real) {
      std::string s(real);
      std::free(real);
      return s;
    }
    return info.dli_fname;
  }
  return fallback;
}

}  // namespace nms::cuda
