#include <vector>

#include "napi/registry.h"

namespace nms::napi {
namespace {
struct Entry { const char* name; RegisterFn fn; };
std::vector<Entry>& families() {
  static std::vector<Entry> list;
  return list;
}
}  // namespace

Family::Family(const char* name, RegisterFn fn) { families().push_back({name, fn}); }

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (const auto& f : families()) f.fn(env, exports);
  return exports;
}

}  // namespace nms::napi

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return nms::napi::Init(env, exports); }
NODE_API_MODULE(nmsparse, InitAddon)
