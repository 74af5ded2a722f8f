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

bool exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
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
  // The places in search order; a bare soname stands for the loader path.
  std::vector<std::string> dirs;
  for (const auto& m : missing) {
    const std::string dir = m.find('/') == std::string::npos ? "the loader path" : m.substr(0, m.rfind('/'));
    if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) dirs.push_back(dir);
  }
  std::string s = "not found in ";
  for (size_t i = 0; i < dirs.size() && i < 8; ++i) s += (i ? ", " : "") + dirs[i];
  if (dirs.empty()) s += "the loader path";
  if (dirs.size() > 8) s += " and " + std::to_string(dirs.size() - 8) + " more places";
  for (const auto& o : other) s += "; " + o;
  return s;
}

namespace {

// The site-packages (and dist-packages) directories of a Python prefix, newest Python first.
void add_sites(const std::string& prefix, std::vector<std::string>& out) {
  if (prefix.empty()) return;
  for (const char* l : {"/lib/python3*/site-packages", "/lib/python3*/dist-packages", "/lib64/python3*/site-packages"})
    for (auto& d : glob_dirs(prefix + l)) out.push_back(d);
}

// The prefix of the first python3 on PATH (<prefix>/bin/python3), symlinks not followed: a venv's python3 is a
// link to the system one, and the venv's own site-packages is the one wanted.
std::string python3_prefix() {
  std::vector<std::string> path;
  split_paths(env("PATH"), path);
  for (const auto& dir : path) {
    struct stat st;
    const std::string exe = dir + "/python3";
    if (stat(exe.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
      const size_t slash = dir.find_last_of('/');
      return slash == std::string::npos || slash == 0 ? std::string("/") : dir.substr(0, slash);
    }
  }
  return {};
}

}  // namespace

std::vector<std::string> search_locations(const std::vector<std::string>& wheel_subdirs) {
  std::vector<std::string> first_sites, other_sites;
  add_sites(env("VIRTUAL_ENV"), first_sites);
  add_sites(env("CONDA_PREFIX"), first_sites);
  for (const char* venv : {"/opt/*/.venv", "/opt/*/venv"})
    for (auto& d : glob_dirs(venv)) add_sites(d, first_sites);
  add_sites(python3_prefix(), first_sites);

  split_paths(env("PYTHONPATH"), other_sites);
  const std::string home = env("HOME");
  if (!home.empty()) {
    add_sites(home + "/.local", other_sites);
    for (auto& v : glob_dirs(home + "/.pyenv/versions/*")) add_sites(v, other_sites);
  }
  add_sites("/usr/local", other_sites);
  add_sites("/usr", other_sites);
  other_sites.push_back("/usr/lib/python3/dist-packages");
  for (auto& d : glob_dirs("/opt/*")) {
    add_sites(d, other_sites);
    for (auto& e : glob_dirs(d + "/envs/*")) add_sites(e, other_sites);  // conda environments under /opt/<conda>/envs
  }

  std::vector<std::string> cand;
  const std::string forced = env("NMSPARSE_CUDA_LIBS");
  if (!forced.empty()) cand.push_back(forced);
  auto wheels = [&](const std::vector<std::string>& sites) {
    for (auto& site : sites)
      for (auto& sub : wheel_subdirs) cand.push_back(site + "/nvidia/" + sub + "/lib");
  };
  wheels(first_sites);
  cand.push_back("/usr/lib/x86_64-linux-gnu");
  cand.push_back(kLoaderPath);
  wheels(other_sites);
  for (const char* v : {"CUDA_HOME", "CUDA_PATH"}) {
    const std::string h = env(v);
    if (!h.empty()) cand.push_back(h + "/lib64");
  }
  cand.push_back("/usr/local/cuda/lib64");
  for (auto& d : glob_dirs("/usr/local/cuda/targets/*/lib")) cand.push_back(d);

  std::vector<std::string> out;
  std::set<std::string> seen;
  for (auto& d : cand)
    if (seen.insert(d).second && (d == kLoaderPath || is_dir(d))) out.push_back(d);
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
  const std::string forced = env("NMSPARSE_CUDA_LIBS");
  if (!forced.empty() && !is_dir(forced)) lib.tried.push_back("NMSPARSE_CUDA_LIBS=" + forced + ": not a directory");
  for (const auto& where : search_locations(wheel_subdirs))
    for (const auto& so : sonames) {
      // A directory holds the file or not: skip a missing one quietly (summary() lists the directories searched).
      if (where != kLoaderPath && !exists(where + "/" + so)) {
        lib.tried.push_back(where + "/" + so + ": No such file");
        continue;
      }
      if (attempt(where == kLoaderPath ? so : where + "/" + so)) return lib;
    }
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
